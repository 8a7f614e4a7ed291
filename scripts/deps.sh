#!/usr/bin/env bash
# Installs the Debian packages Verified needs when they are missing: libz3-4 (Z3 for `verified prove`
# and the proof tests) and qemu-utils (qemu-img, which scenario files use to create images and tests
# use as a real client), qemu-system-x86 (qemu-storage-daemon and qemu-system-x86_64, which the
# serve tests compare `verified serve` against), and libnbd-bin (nbdinfo and nbdcopy, real NBD
# clients of the export tests). Runs apt-get as root (or through sudo); otherwise says what to install.
set -euo pipefail
need=()
[ -e /usr/lib/x86_64-linux-gnu/libz3.so.4 ] || [ -e /usr/lib/aarch64-linux-gnu/libz3.so.4 ] || ldconfig -p 2>/dev/null | grep -q 'libz3.so.4 ' || need+=(libz3-4)
command -v qemu-img >/dev/null || need+=(qemu-utils)
{ command -v nbdinfo >/dev/null && command -v nbdcopy >/dev/null; } || need+=(libnbd-bin)
{ command -v qemu-storage-daemon >/dev/null && command -v qemu-system-x86_64 >/dev/null; } || need+=(qemu-system-x86)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
  echo "missing packages: ${need[*]} (install with: apt-get install -y ${need[*]})" >&2; exit 1
fi
echo "installing ${need[*]}" >&2
$sudo apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
