#!/usr/bin/python3
"""NBD export throughput: `verified serve` against qemu-storage-daemon, the same client for both.

Both daemons run for the whole script, each exporting its own copy of the same raw image (written
through once, so reads hit data) over a unix socket. Every row runs the same `qemu-img bench`
command against each export, strictly alternating Verified, QSD, Verified, QSD… for PAIRS pairs, and
takes the median of qemu-img's own "Run completed in X seconds." line (connection set-up is outside
it for both). Ratio = Verified time / QSD time: at or below 1 Verified is as fast or faster. Writes a
Markdown table and a CSV of every run. Called by nbd-side-by-side.sh, which builds what this needs.
"""
import argparse
import csv
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

RUN_LINE = re.compile(r"^Run completed in ([0-9.]+) seconds\.$", re.M)
RUN_TIMEOUT_S = 600
IMAGE_BYTES = 256 << 20
# Requests per run by (size, depth): about a second each on the reference machine.
COUNTS = {("4k", 1): 20000, ("4k", 16): 50000, ("64k", 1): 10000, ("64k", 16): 20000}


def rows():
    for size in ("4k", "64k"):
        for op in ("read", "write"):
            for depth in (1, 16):
                args = ["-f", "raw", "-s", size, "-d", str(depth), "-c", str(COUNTS[(size, depth)])]
                if op == "write":
                    args.append("-w")
                yield f"{size} {op} d{depth}", args


def run_once(args, uri):
    cmd = ["qemu-img", "bench", *args, uri]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    m = RUN_LINE.search(p.stdout)
    if p.returncode != 0 or not m:
        sys.exit(f"nbd-side-by-side: {' '.join(cmd)} failed (exit {p.returncode}):\n{p.stdout}{p.stderr}")
    return float(m.group(1))


def wait_for(path, proc, what):
    for _ in range(600):
        if os.path.exists(path):
            return
        if proc.poll() is not None:
            sys.exit(f"nbd-side-by-side: {what} exited early: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.05)
    sys.exit(f"nbd-side-by-side: {what} did not create {path}")


def daemon_args(image, sock):
    return ["--blockdev", f"driver=file,node-name=f0,filename={image}",
            "--nbd-server", f"addr.type=unix,addr.path={sock}",
            "--export", "type=nbd,id=e0,node-name=f0,name=exp,writable=on"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--verified", required=True, help="the verified command")
    ap.add_argument("--out", required=True, help="folder for nbd-side-by-side.{md,csv}")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--only", default="", help="run only rows whose name contains this")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="nbd-bench.", dir="/var/tmp")
    procs = []
    try:
        images = {}
        for who in ("v", "q"):
            images[who] = os.path.join(tmp, f"{who}.raw")
            with open(images[who], "wb") as f:
                chunk = b"\x55" * (1 << 20)
                for _ in range(IMAGE_BYTES >> 20):
                    f.write(chunk)
        socks = {who: os.path.join(tmp, f"{who}.sock") for who in ("v", "q")}
        qmp = os.path.join(tmp, "qmp.sock")
        procs.append(subprocess.Popen([a.verified, "serve", "--qmp", f"unix:{qmp}", *daemon_args(images["v"], socks["v"])],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        wait_for(socks["v"], procs[-1], "verified serve")
        procs.append(subprocess.Popen(["qemu-storage-daemon", *daemon_args(images["q"], socks["q"])],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        wait_for(socks["q"], procs[-1], "qemu-storage-daemon")
        uris = {who: f"nbd+unix:///exp?socket={socks[who]}" for who in ("v", "q")}
        load_start = os.getloadavg()[0]
        # One unmeasured run each: JIT, page cache, connection paths.
        for who in ("v", "q"):
            run_once(["-f", "raw", "-s", "4k", "-d", "16", "-c", "20000"], uris[who])
        table, runs = [], []
        for name, args in rows():
            if a.only and a.only not in name:
                continue
            times = {"v": [], "q": []}
            for i in range(a.pairs):
                for who in ("v", "q"):
                    t = run_once(args, uris[who])
                    times[who].append(t)
                    runs.append((name, i, "verified" if who == "v" else "qsd", t))
            mv, mq = statistics.median(times["v"]), statistics.median(times["q"])
            n = int(args[args.index("-c") + 1])
            size = 4096 if name.startswith("4k ") else 65536
            table.append((name, " ".join(args), mv, mq, mv / mq, n * size / mv / (1 << 20), n * size / mq / (1 << 20)))
            print(f"{name}: verified {mv:.3f} s, qsd {mq:.3f} s, ratio {mv / mq:.2f}", flush=True)
        load_end = os.getloadavg()[0]
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    qemu_version = subprocess.run(["qemu-storage-daemon", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "nbd-side-by-side.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row", "pair", "daemon", "seconds"])
        w.writerows(runs)
    with open(os.path.join(a.out, "nbd-side-by-side.md"), "w") as f:
        f.write(f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} vCPU, {platform.release()}, "
                f"{qemu_version}; {a.pairs} alternating pairs per row; client qemu-img bench over a unix socket; "
                f"load average {load_start:.1f} at the start and {load_end:.1f} at the end.\n\n")
        f.write("| row | qemu-img bench arguments | Verified median (s) | QSD median (s) | time Verified/QSD | MiB/s Verified | MiB/s QSD |\n")
        f.write("|---|---|---|---|---|---|---|\n")
        for name, args, mv, mq, r, tv, tq in table:
            f.write(f"| {name} | `{args}` | {mv:.3f} | {mq:.3f} | **{r:.2f}** | {tv:.0f} | {tq:.0f} |\n")


if __name__ == "__main__":
    main()
