#!/usr/bin/env bash
# Install libsipsimple (shared and static library, header, pkg-config file).
#   scripts/install.sh PREFIX [debug|release]     (default: release)
# Then: PKG_CONFIG_PATH=PREFIX/lib/pkgconfig pkg-config --cflags --libs sipsimple
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:?usage: scripts/install.sh PREFIX [debug|release]}
profile=${2:-release}
if [ "$profile" = release ]; then cargo build --quiet --release --lib; else cargo build --quiet --lib; fi
prefix=$(mkdir -p "$prefix" && cd "$prefix" && pwd)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
install -d "$prefix/lib/pkgconfig" "$prefix/include"
install -m 0755 "target/$profile/libsipsimple.so" "$prefix/lib/"
install -m 0644 "target/$profile/libsipsimple.a" "$prefix/lib/"
install -m 0644 include/sipsimple.h "$prefix/include/"
cat > "$prefix/lib/pkgconfig/sipsimple.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: sipsimple
Description: SIP SIMPLE client SDK (sessions, audio, chat and file transfer over MSRP, presence)
Version: $version
Libs: -L\${libdir} -lsipsimple
Libs.private: -lpthread -ldl -lm -lasound
Cflags: -I\${includedir}
PC
echo "installed libsipsimple $version ($profile) into $prefix"
