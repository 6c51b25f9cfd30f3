#!/usr/bin/env bash
# Builds a statically linked release binary of Berth: one file to drop on a NAS, a Raspberry Pi
# or into a `FROM scratch` image (Dockerfile).
#
#   scripts/build-static.sh                              # x86_64-unknown-linux-musl
#   scripts/build-static.sh aarch64-unknown-linux-musl   # 64-bit ARM (Raspberry Pi 3/4/5, ARM NAS)
#
# Output: target/static/berth-<target> (symbols stripped), beside cargo's own
# target/<target>/release/berth. The script checks the result is statically linked and prints
# its size.
#
# Needs:
#   - the Rust target: `rustup target add <target>`;
#   - a C compiler for that target, because `ring` (rustls' crypto) has C and assembly parts:
#       x86_64:  musl-gcc from Debian's musl-tools (installed here via apt when missing);
#       aarch64: a cross compiler, aarch64-linux-musl-gcc (musl.cc toolchain) or Debian's
#                gcc-aarch64-linux-gnu (aarch64-linux-gnu-gcc); pass another one with
#                CC_aarch64_unknown_linux_musl=... and CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=...
#     `cross build --release --target aarch64-unknown-linux-musl -p berth` or
#     `cargo zigbuild` are alternatives that bring their own toolchain.
# Environment: JOBS (default 2) is cargo's -j.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${1:-x86_64-unknown-linux-musl}
jobs=${JOBS:-2}
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

die() { echo "build-static: $*" >&2; exit 1; }

if command -v rustup >/dev/null 2>&1; then
  rustup target list --installed | grep -qx "$target" ||
    die "the Rust target $target is not installed: rustup target add $target"
fi

case "$target" in
  x86_64-unknown-linux-musl)
    if ! command -v musl-gcc >/dev/null 2>&1; then
      echo "build-static: installing musl-tools (musl-gcc, for ring's C code)"
      $sudo apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq musl-tools >/dev/null
    fi
    export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-musl-gcc}
    strip_tool="strip"
    ;;
  aarch64-unknown-linux-musl)
    # Prefer a real musl cross toolchain; Debian's glibc cross gcc also compiles ring's C and
    # assembly and links with Rust's self-contained musl start files.
    if [ -z "${CC_aarch64_unknown_linux_musl:-}" ]; then
      for cc in aarch64-linux-musl-gcc aarch64-linux-gnu-gcc; do
        command -v "$cc" >/dev/null 2>&1 && { export CC_aarch64_unknown_linux_musl=$cc; break; }
      done
    fi
    [ -n "${CC_aarch64_unknown_linux_musl:-}" ] ||
      die "no aarch64 C compiler: apt-get install gcc-aarch64-linux-gnu, or use a musl.cc toolchain"
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER:-$CC_aarch64_unknown_linux_musl}
    strip_tool=${CC_aarch64_unknown_linux_musl%gcc}strip
    ;;
  *)
    die "unsupported target $target (x86_64-unknown-linux-musl or aarch64-unknown-linux-musl)"
    ;;
esac

echo "build-static: cargo build --release --locked -p berth --target $target -j$jobs"
cargo build --release --locked -p berth --target "$target" -j"$jobs"

built=target/$target/release/berth
out=target/static/berth-$target
mkdir -p target/static
cp "$built" "$out.tmp"
if command -v "$strip_tool" >/dev/null 2>&1; then
  "$strip_tool" "$out.tmp"
else
  echo "build-static: $strip_tool not found; the binary keeps its symbols" >&2
fi
mv "$out.tmp" "$out"

# Statically linked: `file` says so and there is no program interpreter (ld.so) to load.
description=$(file -b "$out")
echo "build-static: file: $description"
case "$description" in
  *"statically linked"* | *"static-pie linked"*) ;;
  *) die "$out is not statically linked" ;;
esac
case "$description" in
  *interpreter*) die "$out asks for a dynamic loader" ;;
esac
if [ "$target" = "x86_64-unknown-linux-musl" ] && [ "$(uname -m)" = x86_64 ]; then
  # ldd prints "not a dynamic executable" (exit 1) or "statically linked" for a static binary.
  ldd_out=$(ldd "$out" 2>&1 || true)
  echo "build-static: ldd: $ldd_out"
  case "$ldd_out" in
    *"not a dynamic executable"* | *"statically linked"*) ;;
    *) die "ldd lists shared libraries for $out" ;;
  esac
  "$out" --version
fi
size=$(stat -c %s "$out")
echo "build-static: $out: $size bytes ($(numfmt --to=iec-i --suffix=B "$size")); unstripped $(stat -c %s "$built") bytes"
