#!/usr/bin/env bash
# The whole test suite: the services it needs (scripts/services.sh), formatting, lints, the monitoring files with promtool
# (scripts/check-monitoring.sh), HTTP fuzzing of the binary against its OpenAPI document, then every unit, property,
# conformance, HTTP and process test, and last the slow tests a plain `cargo test` skips (`#[ignore]`d).
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
# The slow tests, `#[ignore]`d so a plain `cargo test` stays quick, run here by name: the
# two `cgm-hub serve` processes on one PostgreSQL and one RabbitMQ (about 100 s), and the
# demo generator's multi-year realism soak.
cargo test --locked --test it -- --ignored two_instances_on_one_postgres_and_one_rabbitmq
cargo test --locked --lib -- --ignored long_run_stays_realistic
