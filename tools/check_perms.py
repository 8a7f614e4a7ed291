#!/usr/bin/env python3
"""check_perms.py RESULT.json... - check a scenario's "expect_perms" against a qmp_peer.py recording.

qmp_peer.py (shared/tools) records x-debug-query-block-graph after every QMP step but checks only
expect/expect_desc/expect_edges. This checks Verified's extension "expect_perms":
[[parent, child-name, child, PERM, SHARED], ...] with PERM/SHARED in short form (CR|W|WU|RS, -, ALL).
Labels: node-name, BlockBackend name (an export's BB is unnamed in QEMU 7.2, so an expected
parent that is an export id also matches ""), '#auto' for generated names. Exit 1 on any mismatch.
"""
import json
import sys

SHORT = {"consistent-read": "CR", "write": "W", "write-unchanged": "WU", "resize": "RS"}
ORDER = ["CR", "W", "WU", "RS"]


def short(perms):
    bits = sorted({SHORT[p] for p in perms}, key=ORDER.index)
    return "-" if not bits else ("ALL" if len(bits) == 4 else "|".join(bits))


def norm(text):
    if text in ("-", "ALL"):
        return text
    bits = sorted(set(text.split("|")), key=ORDER.index)
    return "ALL" if len(bits) == 4 else "|".join(bits)


def label(name):
    return "#auto" if name.startswith("#") else name


def main(paths):
    bad = 0
    for path in paths:
        rec = json.load(open(path))
        exports = set()
        for step in rec["steps"]:
            s = step.get("step", {})
            if s.get("execute") == "block-export-add":
                exports.add(s["arguments"]["id"])
            if s.get("execute") == "nbd-server-add":
                exports.add(s["arguments"].get("name", s["arguments"]["device"]))
            if "expect_perms" not in s or "graph" not in step:
                continue
            names = {n["id"]: label(n["name"]) for n in step["graph"]["nodes"]}
            for parent, cname, child, perm, shared in s["expect_perms"]:
                cands = [e for e in step["graph"]["edges"]
                         if names[e["parent"]] in ((parent, "") if parent in exports else (parent,))
                         and e["name"] == cname and names[e["child"]] == child]
                got = [(short(e["perm"]), short(e["shared-perm"])) for e in cands]
                if (norm(perm), norm(shared)) not in got:
                    bad += 1
                    print(f"{path} step {step['index']}: {parent} -{cname}-> {child}: want {perm} / {shared}, QEMU has {got}")
    print(f"expect_perms: {'all match' if not bad else f'{bad} mismatches'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
