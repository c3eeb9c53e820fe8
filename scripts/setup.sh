#!/usr/bin/env bash
# Install what building and testing need, idempotently: Debian packages,
# Python packages, cargo tools, the Kotlin compiler. Safe to run repeatedly.
#   scripts/setup.sh           everything the tests need
#   scripts/setup.sh --demo    only what the demo needs
set -euo pipefail
sudo_cmd() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

debs=(gcc pkg-config cmake libasound2-dev)
if [ "${1:-}" != "--demo" ]; then
  debs+=(valgrind libjna-java default-jre-headless sip-tester tshark baresip-core espeak-ng kamailio kamailio-tls-modules iproute2)
fi
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd apt-get update -qq
  sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[ "${1:-}" = "--demo" ] && exit 0

python3 -c 'import pytest' 2>/dev/null || python3 -m pip install -q pytest
command -v cbindgen >/dev/null || cargo install --locked --quiet cbindgen
command -v cargo-fuzz >/dev/null || cargo install --locked --quiet cargo-fuzz
kotlinc_path="$(npm root -g 2>/dev/null)/kotlin-compiler/bin/kotlinc"
[ -x "$kotlinc_path" ] || npm install -g --silent kotlin-compiler >/dev/null
rustup component list --installed 2>/dev/null | grep -q clippy || rustup component add clippy rustfmt
echo "setup: done"
