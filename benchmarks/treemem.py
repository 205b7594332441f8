"""Run a command and report its wall time and the peak RSS of its whole process tree.

The tree includes everything the command starts: the driver, Ray's daemons (GCS, raylet,
...) and the actors. Memory is sampled from /proc every 0.1 s (Linux only).

Usage:
    python -m benchmarks.treemem -- python -m examples.million
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def tree_rss(root: int) -> int:
    """Bytes resident in ``root`` and all its descendants."""
    tree = _children()
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/statm") as statm:
                total += int(statm.read().split()[1]) * _PAGE
        except OSError:
            pass
        stack.extend(tree.get(pid, []))
    return total


def run(command: list[str]) -> tuple[int, float, int]:
    """Runs ``command``; returns its exit code, wall seconds and peak tree RSS in bytes."""
    started = time.monotonic()
    process = subprocess.Popen(command)
    peak = 0
    while process.poll() is None:
        peak = max(peak, tree_rss(process.pid))
        time.sleep(0.1)
    return process.returncode, time.monotonic() - started, peak


def main() -> None:
    args = sys.argv[1:]
    if args and args[0] == "--":
        args = args[1:]
    code, seconds, peak = run(args)
    print(f"wall {seconds:.1f} s, peak RSS of the process tree {peak / 2**30:.2f} GiB")
    sys.exit(code)


if __name__ == "__main__":
    main()
