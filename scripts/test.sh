#!/usr/bin/env bash
# Every test: formatting and lints, the Rust unit and integration tests, the
# header and bindings drift checks, the C programs under valgrind, the Python
# and Kotlin bindings, the fuzz targets for a bounded time. Prints one "N passed, N failed" line at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh || exit 1

passed=0
failed=0
failures=()
step() {
  local name=$1
  shift
  echo "=== $name"
  local t0=$SECONDS
  if "$@"; then
    passed=$((passed + 1))
    echo "--- ok: $name ($((SECONDS - t0)) s)"
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "--- FAILED: $name ($((SECONDS - t0)) s)"
  fi
}

VG=(valgrind -q --suppressions=scripts/valgrind.supp --num-callers=30 --leak-check=full --show-leak-kinds=definite,indirect,possible
    --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=99)
KOTLINC="$(npm root -g 2>/dev/null)/kotlin-compiler/bin/kotlinc"
JNA=/usr/share/java/jna.jar
export PKG_CONFIG_PATH="$PWD/build/prefix/lib/pkgconfig"
export LD_LIBRARY_PATH="$PWD/build/prefix/lib"

c_build() {
  scripts/install.sh build/prefix debug >/dev/null || return 1
  local cflags
  cflags=$(pkg-config --cflags --libs sipsimple) || return 1
  # shellcheck disable=SC2086
  gcc -Wall -Wextra -Werror -std=c11 examples-c/hello.c $cflags -o build/hello &&
    gcc -Wall -Wextra -Werror -std=c11 -D_DEFAULT_SOURCE examples-c/loopback.c $cflags -lpthread -lm -o build/loopback &&
    gcc -Wall -Wextra -Werror -std=c11 -D_DEFAULT_SOURCE tests/c/misuse.c $cflags -lpthread -o build/misuse &&
    gcc -Wall -Wextra -Werror -std=c11 -D_DEFAULT_SOURCE tests/c/concurrency.c $cflags -lpthread -o build/concurrency &&
    gcc -Wall -Wextra -Werror -std=c11 examples-c/hello.c -Ibuild/prefix/include build/prefix/lib/libsipsimple.a \
      $(pkg-config --libs-only-other --static sipsimple) -lpthread -ldl -lm -lasound -o build/hello-static &&
    ./build/hello-static >/dev/null
}
kotlin_hello() {
  mkdir -p build/kotlin &&
    "$KOTLINC" -nowarn examples-kotlin/Hello.kt bindings/kotlin/org/sipsimple/sipsimple.kt -cp "$JNA" \
      -include-runtime -d build/kotlin/hello.jar 2>&1 | grep -v '^warning' ;
  java -Djna.library.path="$PWD/target/debug" -cp "build/kotlin/hello.jar:$JNA" HelloKt
}

step "cargo fmt" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --quiet --all-targets -- -D warnings
step "cargo test" cargo test --quiet
step "header drift" scripts/gen-header.sh --check
step "bindings drift" scripts/gen-bindings.sh --check
step "C build (pkg-config, shared and static)" c_build
step "C hello under valgrind" timeout 300 "${VG[@]}" ./build/hello
step "C loopback demo (a C-defined stream type) under valgrind" timeout 300 "${VG[@]}" ./build/loopback
step "C misuse under valgrind" timeout 300 "${VG[@]}" ./build/misuse
step "C concurrency (8 threads) under valgrind" timeout 300 "${VG[@]}" ./build/concurrency 3
step "Python bindings (pytest)" timeout 300 python3 -m pytest -q tests/python
step "Kotlin hello" kotlin_hello
step "fuzz targets (40 s each)" scripts/fuzz.sh 40

echo
if [ $failed -gt 0 ]; then
  echo "failed steps: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
