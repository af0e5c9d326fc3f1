# Every target runs a real command; see README.md for what each needs.
.PHONY: help dev-up build migrate test test-integration test-coverage lint fmt

CARGO ?= cargo

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

dev-up: ## Run the whole platform in one process on embedded defaults (gateway on :8080)
	$(CARGO) run --release

build: ## Build every binary in release mode
	$(CARGO) build --release --workspace

migrate: ## Apply every service's database migrations
	$(CARGO) run --release -- migrate

test: ## Unit and integration tests on SQLite (PostgreSQL/Redis suites run when TEST_DATABASE_URL/TEST_REDIS_URL are set)
	$(CARGO) test --workspace

test-integration: ## Start PostgreSQL and Redis if needed, then run every suite against them too
	@export $$(scripts/test-services.sh | xargs) TEST_REQUIRE_BACKENDS=1 && $(CARGO) test --workspace

test-coverage: ## Line coverage of the whole test suite (installs cargo-llvm-cov on first use)
	@command -v cargo-llvm-cov >/dev/null || $(CARGO) install cargo-llvm-cov --version 0.9.1 --locked
	@rustup component list --installed | grep -q llvm-tools || rustup component add llvm-tools-preview
	$(CARGO) llvm-cov --workspace --summary-only

lint: ## Formatting check and clippy with warnings as errors
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all
