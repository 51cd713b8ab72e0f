#!/usr/bin/env bash
# Chromium for the browser test (tests/integration/test_browser.py drives it with Playwright, headless, at
# /usr/bin/chromium; no browser download). Installs Debian's chromium when it is missing and this user can
# (root with apt-get); otherwise says so in one line and the browser test is skipped.
set -uo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "install_chromium: installing chromium (apt-get) for the browser test"
  if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        chromium fonts-liberation) >/tmp/kexaone-install-chromium.log 2>&1; then
    exit 0
  fi
  echo "install_chromium: apt-get failed (log: /tmp/kexaone-install-chromium.log); the browser test will be skipped"
  exit 0
fi
echo "install_chromium: chromium is not installed and this user cannot apt-get it; the browser test will be skipped"
