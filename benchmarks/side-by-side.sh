#!/usr/bin/env bash
# One command from a clean clone: installs qemu-utils and python3-matplotlib when missing, builds the
# `verified` command in Release, then runs verified bench and qemu-img bench alternately on the same
# image over issue 9's matrix (benchmarks/side-by-side.py) and writes benchmarks/results/side-by-side.{md,csv,png}.
# Arguments go to side-by-side.py, e.g. --pairs 7, --raw-count 100000, --only null.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
if ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
    echo "missing python3-matplotlib (apt-get install -y python3-matplotlib)" >&2; exit 1
  fi
  echo "installing python3-matplotlib" >&2
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-matplotlib >/dev/null
fi
dotnet build src/Cli -c Release -v quiet -nologo >/dev/null
exec /usr/bin/python3 benchmarks/side-by-side.py --verified src/Cli/bin/Release/net10.0/verified --out benchmarks/results "$@"
