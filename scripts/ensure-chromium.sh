#!/usr/bin/env bash
# Makes sure Debian's Chromium and ChromeDriver are installed (the ops page's browser test needs them).
# As root, installs the missing packages with apt-get; otherwise says what to install and exits 1.
# Prints nothing and exits 0 when both are already there.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver

missing=()
[[ -x "$CHROMIUM" ]] || missing+=(chromium)
[[ -x "$CHROMEDRIVER" ]] || missing+=(chromium-driver)
((${#missing[@]} == 0)) && exit 0

if [[ "$(id -u)" != 0 ]]; then
    echo "ensure-chromium: missing ${missing[*]} ($CHROMIUM, $CHROMEDRIVER)." >&2
    echo "ensure-chromium: install as root: apt-get update && apt-get install -y chromium chromium-driver" >&2
    exit 1
fi

echo "ensure-chromium: installing ${missing[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Both packages, not only the missing one: chromium-driver must match chromium's version exactly.
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
for f in "$CHROMIUM" "$CHROMEDRIVER"; do
    [[ -x "$f" ]] || { echo "ensure-chromium: $f is still missing after apt-get install" >&2; exit 1; }
done
echo "ensure-chromium: $("$CHROMIUM" --version 2>/dev/null || true); $("$CHROMEDRIVER" --version 2>/dev/null | cut -d' ' -f1-2)"
