#!/usr/bin/env bash
# The whole test suite: the services it needs (scripts/services.sh), formatting, lints, the monitoring files with promtool
# (scripts/check-monitoring.sh), HTTP fuzzing of the binary against its OpenAPI document, then every unit, property,
# conformance, HTTP and process test.
# This is the command the README and CI run.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
scripts/check-monitoring.sh
cargo build --locked --bin cgm-hub
scripts/fuzz-api.sh
cargo test --locked --lib --bins --tests --no-fail-fast
