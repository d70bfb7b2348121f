#!/usr/bin/env bash
# Prometheus + promtool from Debian's package: the integration tests scrape the running app with a real
# Prometheus and evaluate every dashboard and alert expression; tests/deploy runs `promtool check rules`.
set -euo pipefail
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  echo "prometheus present: $(prometheus --version 2>&1 | sed -n 1p)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "prometheus is missing: run 'sudo apt-get install -y prometheus' (Debian/Ubuntu), then retry" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1 \
  || { apt-get update -qq && apt-get install -y --no-install-recommends prometheus; }
# The package may start its own daemon (port 9090) where an init system exists; the tests start theirs.
echo "prometheus installed: $(prometheus --version 2>&1 | sed -n 1p)"
