#!/usr/bin/python3
"""Runs `verified bench` and `qemu-img bench` alternately on the same image over issue 9's matrix.

Every row runs PAIRS pairs (Verified then QEMU, strictly alternating), reads each tool's own
"Run completed in X seconds." line, and reports the medians and the ratio Verified/QEMU (below 1 means
Verified is faster). Writes a Markdown table, a CSV of every run and a PNG plot into the output folder.
Called by side-by-side.sh, which installs and builds what this needs.
"""
import argparse
import csv
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

RUN_LINE = re.compile(r"^Run completed in ([0-9.]+) seconds\.$", re.M)
# A run that takes longer than this is stuck (qemu-img bench never times itself out).
RUN_TIMEOUT_S = 600
# Size of the raw test image: large enough that the sequential offsets sweep many pages, small enough to stay in the page cache.
IMAGE_BYTES = 256 << 20


def matrix(image, qcow2, fresh, raw_count, null_count):
    """(row name, arguments common to both tools, command to run before each run or None) for every row."""
    rows = []
    for op in ("read", "write"):
        for depth in (1, 64):
            for cache in ("none", "writeback"):
                args = ["-f", "raw", "-c", str(raw_count), "-d", str(depth), "-t", cache]
                if op == "write":
                    args.append("-w")
                rows.append((f"raw {op} d{depth} {cache}", args + [image], None))
    # qcow2 (64 KiB clusters): reads and writes of allocated clusters on an image written through once;
    # allocating writes on a new empty image made before every run (outside the timed part of both tools).
    for op in ("read", "write"):
        for depth in (1, 64):
            for cache in ("none", "writeback"):
                args = ["-f", "qcow2", "-c", str(raw_count), "-d", str(depth), "-t", cache] + (["-w"] if op == "write" else [])
                rows.append((f"qcow2 {op} d{depth} {cache}", args + [qcow2], None))
    for depth in (1, 64):
        for cache in ("none", "writeback"):
            args = ["-f", "qcow2", "-c", str(raw_count), "-d", str(depth), "-t", cache, "-w", fresh]
            rows.append((f"qcow2 allocating write d{depth} {cache}", args,
                         ["qemu-img", "create", "-q", "-f", "qcow2", fresh, str(IMAGE_BYTES)]))
    stacks = [
        ("null-co", "driver=null-co"),
        ("raw/null-co", "driver=raw,file.driver=null-co"),
        ("raw/raw/null-co", "driver=raw,file.driver=raw,file.file.driver=null-co"),
    ]
    for name, opts in stacks:
        rows.append((f"{name} read d64", ["-c", str(null_count), "--image-opts", opts], None))
    return rows


def run_once(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    m = RUN_LINE.search(p.stdout)
    if p.returncode != 0 or not m:
        sys.exit(f"side-by-side: {' '.join(cmd)} failed (exit {p.returncode}):\n{p.stdout}{p.stderr}")
    return float(m.group(1))


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kb = int(f.readline().split()[1])
            mem = f", {kb / (1 << 20):.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    qemu = subprocess.run(["qemu-img", "--version"], capture_output=True, text=True, check=False).stdout.splitlines()[0]
    return f"{os.cpu_count()} vCPU {cpu}{mem}, {platform.system()} {platform.release()}, {qemu}"


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["row"] for r in rows]
    ratios = [r["ratio"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, 6.5))
    y = range(len(rows))
    ax1.barh([i + 0.2 for i in y], [r["verified"] for r in rows], 0.4, label="verified bench")
    ax1.barh([i - 0.2 for i in y], [r["qemu"] for r in rows], 0.4, label="qemu-img bench")
    ax1.set_yticks(list(y), names)
    ax1.invert_yaxis()
    ax1.set_xlabel("median run time (s), lower is better")
    ax1.legend(loc="lower right")
    colors = ["tab:green" if q <= 0.8 else "tab:orange" if q <= 1.0 else "tab:red" for q in ratios]
    ax2.barh(list(y), ratios, color=colors)
    ax2.axvline(0.8, color="black", linestyle="--", linewidth=1, label="target 0.8")
    ax2.axvline(1.0, color="grey", linestyle=":", linewidth=1, label="parity")
    ax2.set_yticks(list(y), names)
    ax2.invert_yaxis()
    ax2.set_xlabel("Verified / QEMU (median time ratio)")
    ax2.legend(loc="lower right")
    fig.suptitle("verified bench vs qemu-img bench (same image, alternating runs)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--verified", required=True, help="the verified executable")
    ap.add_argument("--out", required=True, help="folder for side-by-side.md, .csv and .png")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--raw-count", type=int, default=50000, help="requests per raw run")
    ap.add_argument("--null-count", type=int, default=1000000, help="requests per null-co run")
    ap.add_argument("--only", default="", help="run only rows whose name contains this")
    a = ap.parse_args()
    if a.pairs < 1:
        sys.exit("side-by-side: --pairs must be at least 1")
    os.makedirs(a.out, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="side-by-side-", dir=os.environ.get("SIDE_BY_SIDE_DIR", "/var/tmp")) as tmp:
        image = os.path.join(tmp, "bench.img")
        subprocess.run(["qemu-img", "create", "-q", "-f", "raw", image, str(IMAGE_BYTES)], check=True)
        # Written once through so that reads hit allocated blocks, not holes.
        with open(image, "r+b") as f:
            chunk = b"\x5a" * (1 << 20)
            for _ in range(IMAGE_BYTES // len(chunk)):
                f.write(chunk)
        # The qcow2 image of the allocated rows: every cluster written once, by qemu-io.
        qcow2 = os.path.join(tmp, "bench.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", qcow2, str(IMAGE_BYTES)], check=True)
        subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -q -P 0x5a 0 {IMAGE_BYTES}", qcow2], check=True, capture_output=True)
        fresh = os.path.join(tmp, "fresh.qcow2")
        load = os.getloadavg()
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        results, runs = [], []
        for name, args, prepare in matrix(image, qcow2, fresh, a.raw_count, a.null_count):
            if a.only and a.only not in name:
                continue
            v, q = [], []
            for i in range(a.pairs):
                if prepare:
                    subprocess.run(prepare, check=True)
                v.append(run_once([a.verified, "bench"] + args))
                if prepare:
                    subprocess.run(prepare, check=True)
                q.append(run_once(["qemu-img", "bench"] + args))
                runs.append((name, i, v[-1], q[-1]))
            mv, mq = statistics.median(v), statistics.median(q)
            count = a.null_count if "null" in name else a.raw_count
            results.append({"row": name, "verified": mv, "qemu": mq, "ratio": mv / mq if mq > 0 else float("inf"),
                            "us_per_req_v": mv / count * 1e6, "us_per_req_q": mq / count * 1e6,
                            "args": " ".join({image: "IMAGE", qcow2: "QCOW2", fresh: "NEW.qcow2"}.get(x, x) for x in args)})
            print(f"{name:28s} verified {mv:7.3f} s  qemu {mq:7.3f} s  ratio {results[-1]['ratio']:.2f}", flush=True)
        load_end = os.getloadavg()

    with open(os.path.join(a.out, "side-by-side.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["row", "pair", "verified_s", "qemu_s"])
        w.writerows(runs)
    lines = [
        f"Measured {started} on {machine()}; {a.pairs} alternating pairs per row; "
        f"load average {load[0]:.1f} at the start and {load_end[0]:.1f} at the end.",
        "",
        "| row | arguments (both tools) | Verified median (s) | QEMU median (s) | Verified/QEMU | µs/request V | µs/request Q |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['row']} | `{r['args']}` | {r['verified']:.3f} | {r['qemu']:.3f} | **{r['ratio']:.2f}** | "
                     f"{r['us_per_req_v']:.2f} | {r['us_per_req_q']:.2f} |")
    null_rows = [r for r in results if "null" in r["row"]]
    if len(null_rows) == 3:
        v = [r["us_per_req_v"] for r in null_rows]
        q = [r["us_per_req_q"] for r in null_rows]
        lines += ["", f"Per raw layer over null-co (µs per request): Verified +{v[1] - v[0]:.3f}, +{v[2] - v[1]:.3f}; "
                  f"QEMU +{q[1] - q[0]:.3f}, +{q[2] - q[1]:.3f}."]
    with open(os.path.join(a.out, "side-by-side.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    plot(results, os.path.join(a.out, "side-by-side.png"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
