#!/usr/bin/env bash
# Run every fuzz target for a bounded time (default 60 s each), seeded with the
# RFC 4475 torture messages and fuzz/seeds/<target>/. cargo-fuzz needs nightly features; the stable
# toolchain provides them with RUSTC_BOOTSTRAP=1.
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install --locked --quiet cargo-fuzz
torture=""
for d in ../shared/testdata/rfc4475 ../../shared/testdata/rfc4475; do
  [ -d "$d" ] && torture=$d && break
done
export RUSTC_BOOTSTRAP=1
for target in sip_datagram sip_stream sip_uri sip_auth sip_transaction sdp rtp msrp cpim iscomposing imdn file_selector srtp; do
  corpus=fuzz/corpus/$target
  mkdir -p "$corpus"
  if [ -n "$torture" ]; then cp "$torture"/*.dat "$corpus"/ 2>/dev/null || true; fi
  # Targets with their own seeds (valid traffic of that protocol).
  if [ -d "fuzz/seeds/$target" ]; then cp fuzz/seeds/"$target"/* "$corpus"/; fi
  echo "fuzz: $target for ${secs}s"
  # A crash makes cargo fuzz exit non-zero; pipefail and -e stop here with
  # the end of its report above.
  cargo fuzz run --fuzz-dir fuzz "$target" "$corpus" -- -max_total_time="$secs" -max_len=8192 -rss_limit_mb=2048 2>&1 | tail -n 4
done
echo "fuzz: all targets clean"
