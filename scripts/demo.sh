#!/usr/bin/env bash
# The main job: build libsipsimple, install it into build/prefix, compile the C
# hello example against it with pkg-config, and run it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --demo
scripts/install.sh build/prefix debug >/dev/null
export PKG_CONFIG_PATH="$PWD/build/prefix/lib/pkgconfig"
# shellcheck disable=SC2046
gcc -Wall -Wextra -Werror -std=c11 examples-c/hello.c $(pkg-config --cflags --libs sipsimple) -o build/hello
LD_LIBRARY_PATH="$PWD/build/prefix/lib" ./build/hello "$@"
