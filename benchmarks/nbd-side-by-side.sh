#!/usr/bin/env bash
# NBD export throughput, `verified serve` against qemu-storage-daemon with the same client (qemu-img
# bench), alternating, over 4 KiB and 64 KiB, read and write, queue depth 1 and 16. Installs what is
# missing (scripts/deps.sh), builds the `verified` command in Release, and writes
# benchmarks/results/nbd-side-by-side.{md,csv}. Arguments go to nbd-side-by-side.py (--pairs N, --only TEXT).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
dotnet build src/Cli -c Release -v quiet -nologo >/dev/null
exec /usr/bin/python3 benchmarks/nbd-side-by-side.py --verified src/Cli/bin/Release/net10.0/verified --out benchmarks/results "$@"
