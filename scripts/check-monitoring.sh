#!/usr/bin/env bash
# Checks the monitoring files with Prometheus's own tool: the alert rules and the
# scrape config parse (`promtool check`), every alert fires on a realistic failure
# and stays quiet on noise (`promtool test rules deploy/prometheus/alerts.test.yml`),
# and every Grafana panel's query is valid PromQL. Which metrics those name, and
# that a running instance exports them, is tests/it/operator_kit.rs's part.
#
# promtool comes from Debian's `prometheus` package, unpacked into a cache folder
# (nothing is installed, no service is started).
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${CGM_HUB_CACHE:-$HOME/.cache/cgm-hub}/promtool"
promtool="$(command -v promtool || true)"
if [ -z "$promtool" ]; then
    promtool="$cache/root/usr/bin/promtool"
    if [ ! -x "$promtool" ]; then
        mkdir -p "$cache"
        (cd "$cache" && { apt-get download prometheus >/dev/null 2>&1 \
            || { apt-get update -qq && apt-get download prometheus; }; })
        dpkg-deb -x "$(ls "$cache"/prometheus_*.deb | head -1)" "$cache/root"
    fi
fi
"$promtool" --version | head -1

"$promtool" check rules deploy/prometheus/alerts.yml
"$promtool" check config --syntax-only deploy/prometheus/prometheus.yml
# The unit tests compare labels; promtool would also compare every annotation's full
# text, so they run against a copy of the rules without annotations (whose templates
# `check rules` has already parsed).
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 - deploy/prometheus/alerts.yml >"$work/alerts.yml" <<'PY'
import sys
skip = None
for line in open(sys.argv[1]):
    indent = len(line) - len(line.lstrip())
    if skip is not None and (not line.strip() or indent > skip):
        continue
    skip = None
    if line.strip() == "annotations:":
        skip = indent
        continue
    sys.stdout.write(line)
PY
cp deploy/prometheus/alerts.test.yml "$work/"
"$promtool" test rules "$work/alerts.test.yml"

# The dashboard's queries, as recording rules, so promtool parses each of them.
panels="$work/panels.yml"
python3 - deploy/grafana/cgm-hub.json >"$panels" <<'PY'
import json, sys

def panels(node):
    for p in node.get("panels", []):
        yield p
        yield from panels(p)

dashboard = json.load(open(sys.argv[1]))
rules = []
for panel in panels(dashboard):
    for target in panel.get("targets", []):
        expr = target.get("expr")
        if expr:
            # Grafana variables stand for a label value or an interval.
            for var, value in [("$__rate_interval", "5m"), ("$__interval", "1m"),
                               ("$__range", "1h"), ("$job", "cgm-hub"), ("$instance", ".*")]:
                expr = expr.replace(var, value)
            rules.append({"record": f"dashboard:panel_{len(rules)}", "expr": expr})
if not rules:
    sys.exit("no panel queries found in the dashboard")
json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, sys.stdout)
PY
"$promtool" check rules "$panels"
