#!/usr/bin/env bash
# Build the project's Icarus Verilog into PREFIX (make icarus: .venv/icarus): Debian's source of
# Icarus 12.0 (the release after bookworm's 11.0), checked by SHA-256, with word-arith.patch
# (vvp evaluates concatenations, add, subtract, multiply and shifts a word at a time; docs/sim.md
# "Icarus 12 with word-level vvp"). About 3 minutes on 2 cores.
set -euo pipefail
prefix=$(realpath -m "${1:?usage: build.sh PREFIX}")
here=$(cd "$(dirname "$0")" && pwd)
url=http://deb.debian.org/debian/pool/main/i/iverilog/iverilog_12.0.orig.tar.gz
sha256=a68cb1ef7c017ef090ebedb2bc3e39ef90ecc70a3400afb4aa94303bc3beaa7d
packages="autoconf bison flex gperf g++ make patch zlib1g-dev libbz2-dev"
tools="autoconf bison flex gperf g++ make patch"

missing=""
for tool in $tools; do command -v "$tool" >/dev/null || missing="$missing $tool"; done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get install -y $packages || (apt-get update && apt-get install -y $packages)) >/dev/null
  else
    echo "make: building Icarus Verilog 12 needs$missing; install them with:" \
         "sudo apt-get install -y $packages" >&2
    exit 1
  fi
fi

work=$(mktemp -d "${prefix}.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
python3 - "$url" "$sha256" "$work/src.tar.gz" <<'PY'
import hashlib, sys, urllib.request
url, expected, path = sys.argv[1:]
data = urllib.request.urlopen(url, timeout=120).read()
got = hashlib.sha256(data).hexdigest()
if got != expected:
    sys.exit(f"make: {url}: SHA-256 {got}, expected {expected}")
open(path, "wb").write(data)
PY
tar -xzf "$work/src.tar.gz" -C "$work"
cd "$work"/iverilog-12_0
patch -p1 --quiet < "$here/word-arith.patch"
# Quiet on success; the log is printed when a step fails.
log="$work/build.log"
rm -rf "$prefix"
{ sh autoconf.sh && ./configure --prefix="$prefix" && make -j"$(nproc)" && make install; } \
  >"$log" 2>&1 || { tail -40 "$log" >&2; echo "make: building Icarus Verilog failed" >&2; exit 1; }
"$prefix/bin/iverilog" -V 2>/dev/null | head -1
touch "$prefix/.built"    # make's target: only a complete install counts
