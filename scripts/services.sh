#!/usr/bin/env bash
# Starts what the test suite talks to, when it is not already running: PostgreSQL and
# RabbitMQ (installed on the machine), and moto's DynamoDB server (installed into a
# venv from PyPI). Idempotent; scripts/test.sh calls it. A backend test whose server
# still cannot be reached fails: nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

# The embedded default (SQLite) needs no service; the other backends' conformance
# and broker tests need theirs, and fail (never skip) when one cannot be reached.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
    for _ in $(seq 1 150); do port_open "$1" && return 0; sleep 0.2; done
    echo "$2 did not open port $1" >&2; return 1
}
if ! port_open 5432; then
    echo "== starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
    wait_port 5432 PostgreSQL
fi
if ! port_open 5672; then
    echo "== starting RabbitMQ"
    rabbitmq-server -detached
    wait_port 5672 RabbitMQ
fi
# The DynamoDB stand-in: moto's server (transactions and TTL, unlike dynalite).
scripts/dynamodb-local.sh

