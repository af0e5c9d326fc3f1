# Every target runs a real command; see README.md for what each needs.
.PHONY: help dev-up build migrate test test-integration test-coverage lint fmt

CARGO ?= cargo

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

dev-up: ## The whole platform in one process (gateway on :8080): embedded defaults, or the Compose servers when they run
	CARGO=$(CARGO) scripts/dev-up.sh

build: ## Build every binary in release mode
	$(CARGO) build --release --workspace

migrate: ## Apply every service's database migrations
	$(CARGO) run --release -- migrate

test: ## Unit and integration tests on SQLite (PostgreSQL/Redis suites run when TEST_DATABASE_URL/TEST_REDIS_URL are set)
	$(CARGO) test --workspace

test-integration: ## Start PostgreSQL and Redis if needed, then run every suite against them too
	@export $$(scripts/test-services.sh | xargs) TEST_REQUIRE_BACKENDS=1 && $(CARGO) test --workspace

test-coverage: ## Line coverage per crate of every suite, PostgreSQL and Redis included; fails under 80% (installs cargo-llvm-cov once)
	@export $$(scripts/test-services.sh | xargs) TEST_REQUIRE_BACKENDS=1 && scripts/coverage.sh

lint: ## Formatting check and clippy with warnings as errors
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

# ---- Containers and deployment (see docs/DEPLOYMENT.md) ----
.PHONY: proto-gen base-image docker-build docker-push compose-images compose-smoke validate-deploy check-monitoring chaos test-chaos load-test test-contract test-e2e test-docs

DOCKER_REGISTRY ?= localhost/microservices-platform
VERSION ?= $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -1)
SERVICES := api-gateway user-service product-service order-service payment-service notification-service event-store
CONTAINER_ENGINE ?= $(shell command -v podman || command -v docker)

proto-gen: ## Regenerate the gRPC code from proto/ (protox in pkg/proto/build.rs: no protoc needed)
	$(CARGO) build -p platform-proto

base-image: ## Build the Debian base image locally with debootstrap (no registry needed)
	scripts/build-base-image.sh

docker-build: ## Build every service's image from one release binary: $(DOCKER_REGISTRY)/<service>:$(VERSION)
	DOCKER_REGISTRY=$(DOCKER_REGISTRY) VERSION=$(VERSION) scripts/docker-build.sh

docker-push: ## Push every image to $(DOCKER_REGISTRY)
	@case "$(DOCKER_REGISTRY)" in localhost*) echo "docker-push: set DOCKER_REGISTRY to your registry (it is $(DOCKER_REGISTRY))" >&2; exit 2;; esac
	@for service in $(SERVICES); do \
		echo "pushing $(DOCKER_REGISTRY)/$$service:$(VERSION)"; \
		$(CONTAINER_ENGINE) push $(DOCKER_REGISTRY)/$$service:$(VERSION) || exit 1; \
	done

compose-images: ## Build PostgreSQL, Redis and Prometheus images from Debian packages (docker-compose.ci.yml)
	scripts/compose-images.sh

compose-smoke: ## Images, then the whole platform on Compose: main journey, Prometheus targets, teardown
	scripts/compose-smoke.sh

validate-deploy: ## Lint and validate Dockerfiles, Compose files, shell scripts, Kubernetes and Istio
	scripts/validate-deploy.sh

check-monitoring: ## Prometheus rules and alert tests, Grafana dashboards, and every query against a live platform up
	scripts/check-monitoring.sh

test-chaos: ## The chaos suite: kills mid-checkout, replicas, Redis and PostgreSQL outages, a hanging provider, a lost write; invariants checked (tests/chaos/run.py, ~6 min; SCENARIO=)
	$(CARGO) build -p platform
	@export $$(scripts/test-services.sh | xargs) && PLATFORM_BIN=$${CARGO_TARGET_DIR:-target}/debug/platform python3 tests/chaos/run.py --scenario $${SCENARIO:-all}

chaos: test-chaos ## The same as test-chaos

test-e2e: ## Every service its own process on PostgreSQL and Redis behind the gateway: the users' journeys, SMTP included (tests/e2e, ~30 s)
	$(CARGO) build -p platform
	@export $$(scripts/test-services.sh | xargs) && PLATFORM_BIN=$${CARGO_TARGET_DIR:-target}/debug/platform python3 tests/e2e/run.py

test-docs: ## Every example request in README.md and docs/API.md, run against a private platform (tests/docs/examples.py, ~10 s)
	$(CARGO) build -p platform
	PLATFORM_BIN=$${CARGO_TARGET_DIR:-target}/debug/platform python3 tests/docs/examples.py

test-contract: ## Schemathesis over the merged OpenAPI document, as admin and as a user (SEED=, EXAMPLES=; installs Schemathesis once)
	$(CARGO) build -p platform
	PLATFORM_BIN=$${CARGO_TARGET_DIR:-target}/debug/platform scripts/api-fuzz.sh

load-test: ## k6 load test through the gateway on a private release platform (PROFILE=load, ~4 min; PROFILE=smoke, ~30 s, is the CI profile)
	$(CARGO) build --release -p platform
	PROFILE=$${PROFILE:-load} PLATFORM_BIN=$${CARGO_TARGET_DIR:-target}/release/platform scripts/load-test.sh
