#!/usr/bin/env bash
# Line coverage of the whole test suite, per crate and for the workspace (make test-coverage).
# Runs every test (with the PostgreSQL and Redis suites when TEST_DATABASE_URL/TEST_REDIS_URL
# are set; `make test-coverage` starts them) under cargo-llvm-cov, prints one line per crate,
# keeps the summary in $CARGO_TARGET_DIR/coverage/, and fails when the workspace is under
# COVERAGE_MIN percent (default 80).
#
#   scripts/coverage.sh                       # installs cargo-llvm-cov on first use
#   COVERAGE_MIN=0 scripts/coverage.sh        # report only
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
llvm_cov_version=0.9.1
minimum=${COVERAGE_MIN:-80}
out=${CARGO_TARGET_DIR:-$repo/target}/coverage
mkdir -p "$out"
say() { echo "coverage [$SECONDS s]: $*" >&2; }

if ! cargo llvm-cov --version 2>/dev/null | grep -q " $llvm_cov_version"; then
    say "installing cargo-llvm-cov $llvm_cov_version (a few minutes, once per machine)"
    env -u CARGO_TARGET_DIR cargo install cargo-llvm-cov --version "$llvm_cov_version" --locked --quiet
fi
if ! rustup component list --installed 2>/dev/null | grep -q '^llvm-tools'; then
    say "adding the llvm-tools component"
    rustup component add llvm-tools-preview
fi

say "instrumented build and every test (the first run builds the workspace again, instrumented)"
cargo llvm-cov --workspace --locked --json --summary-only --output-path "$out/coverage.json"
cargo metadata --no-deps --format-version 1 > "$out/metadata.json"

python3 - "$out" "$minimum" <<'EOF'
import json, os, sys
out, minimum = sys.argv[1], float(sys.argv[2])
packages = json.load(open(os.path.join(out, "metadata.json")))["packages"]
crates = sorted(((os.path.dirname(p["manifest_path"]) + os.sep, p["name"]) for p in packages),
                key=lambda c: -len(c[0]))
report = json.load(open(os.path.join(out, "coverage.json")))["data"][0]
per_crate = {}
for entry in report["files"]:
    name = next((n for d, n in crates if entry["filename"].startswith(d)), None)
    if name is None:
        continue
    lines = entry["summary"]["lines"]
    covered, count = per_crate.get(name, (0, 0))
    per_crate[name] = (covered + lines["covered"], count + lines["count"])
rows = [f"{'crate':<28} {'lines':>7} {'covered':>8} {'percent':>8}"]
for name, (covered, count) in sorted(per_crate.items()):
    rows.append(f"{name:<28} {count:>7} {covered:>8} {100 * covered / max(count, 1):>7.1f}%")
covered = sum(c for c, _ in per_crate.values())
count = sum(n for _, n in per_crate.values())
total = 100 * covered / max(count, 1)
rows.append(f"{'workspace':<28} {count:>7} {covered:>8} {total:>7.1f}%")
text = "\n".join(rows)
print(text)
open(os.path.join(out, "summary.txt"), "w").write(text + "\n")
if total < minimum:
    print(f"workspace line coverage {total:.1f}% is under the {minimum:.0f}% minimum", file=sys.stderr)
    sys.exit(1)
EOF
say "summary kept in $out/summary.txt"
