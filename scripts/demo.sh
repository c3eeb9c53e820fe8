#!/usr/bin/env bash
# The main job: build libsipsimple, install it into build/prefix, compile the
# C loopback demo against it with pkg-config, and run it: alice calls bob over
# 127.0.0.1 in one process, both print their notifications.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --demo
scripts/install.sh build/prefix debug >/dev/null
export PKG_CONFIG_PATH="$PWD/build/prefix/lib/pkgconfig"
# shellcheck disable=SC2046
gcc -Wall -Wextra -Werror -std=c11 -D_DEFAULT_SOURCE examples-c/loopback.c \
  $(pkg-config --cflags --libs sipsimple) -lpthread -lm -o build/loopback
LD_LIBRARY_PATH="$PWD/build/prefix/lib" ./build/loopback "$@"
