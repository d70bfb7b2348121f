#!/usr/bin/env bash
# Chromium + chromedriver from Debian's packages: tests/integration/test_ui.py drives the web playground
# (/ui) in this headless browser through Selenium. Debian's build, not a downloaded one: nothing outside the
# package mirror is fetched, and the driver always matches the browser (one source package).
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  echo "chromium present: $(chromedriver --version 2>&1 | sed -n 1p)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "chromium is missing: run 'sudo apt-get install -y chromium chromium-driver' (Debian), then retry" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null 2>&1 \
  || { apt-get update -qq && apt-get install -y --no-install-recommends chromium chromium-driver; }
echo "chromium installed: $(chromedriver --version 2>&1 | sed -n 1p)"
