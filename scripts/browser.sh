#!/usr/bin/env bash
# Installs what the chat example's browser test (tests/chat) drives when it is missing:
# Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver).
# Usage: scripts/browser.sh   (as root, or with sudo on PATH; a no-op when both are there)
set -euo pipefail

if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
  echo "browser OK: $(/usr/bin/chromium --version 2>/dev/null | head -n 1), $(/usr/bin/chromedriver --version | head -n 1)"
  exit 0
fi
sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)
echo "installing Debian's chromium and chromium-driver (the chat example's browser test)"
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
/usr/bin/chromium --version 2>/dev/null | head -n 1
/usr/bin/chromedriver --version | head -n 1
