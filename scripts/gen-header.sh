#!/usr/bin/env bash
# Regenerate include/sipsimple.h from src/ffi/c with cbindgen.
# With --check: fail if the committed header differs from what cbindgen generates.
set -euo pipefail
cd "$(dirname "$0")/.."
out=include/sipsimple.h
if [ "${1:-}" = "--check" ]; then
  tmp=$(mktemp)
  trap 'rm -f "$tmp"' EXIT
  cbindgen --quiet --config cbindgen.toml --crate sipsimple --output "$tmp"
  if ! cmp -s "$tmp" "$out"; then
    echo "include/sipsimple.h is stale: run scripts/gen-header.sh and commit it" >&2
    diff -u "$out" "$tmp" | head -40 >&2 || true
    exit 1
  fi
  echo "header: up to date"
else
  cbindgen --quiet --config cbindgen.toml --crate sipsimple --output "$out"
  echo "wrote $out"
fi
