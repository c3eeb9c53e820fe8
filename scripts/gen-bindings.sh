#!/usr/bin/env bash
# Generate the Python, Swift and Kotlin bindings in library mode from the built
# cdylib into bindings/{python,swift,kotlin}.
# With --check: generate into a temporary directory and fail if the committed
# bindings differ (drift check used by CI).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --lib
lib=target/debug/libsipsimple.so
cargo build --quiet -p uniffi-bindgen
gen=target/debug/uniffi-bindgen
out=bindings
if [ "${1:-}" = "--check" ]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
for lang in python swift kotlin; do
  rm -rf "${out:?}/$lang"
  mkdir -p "$out/$lang"
  "$gen" generate --library "$lib" --language "$lang" --out-dir "$out/$lang" --no-format >/dev/null
done
if [ "${1:-}" = "--check" ]; then
  if ! diff -r bindings "$out" >/dev/null; then
    echo "bindings/ are stale: run scripts/gen-bindings.sh and commit them" >&2
    diff -ru bindings "$out" | head -40 >&2 || true
    exit 1
  fi
  echo "bindings: up to date"
else
  find bindings -type f | sort
fi
