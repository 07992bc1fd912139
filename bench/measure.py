"""Shared by the benchmark scripts: run a command in its own process and measure its wall time and peak RSS."""

from __future__ import annotations

import subprocess
import sys

# Linux keeps a process's peak RSS across exec, so a command started straight from a (large) benchmark
# process would report that process's peak. A small Python parent forks the command and reports its own peak.
_MEASURE = """
import os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.dup2(2, 1)  # the command's own output goes to stderr: stdout carries only the measurement
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - start, usage.ru_maxrss * 1024, os.waitstatus_to_exitcode(status))
"""


def run_measured(command: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of ``command``; exits if it fails."""
    out = subprocess.run([sys.executable, "-c", _MEASURE, *command], capture_output=True, text=True, check=True)
    seconds, rss, code = out.stdout.split()
    if int(code) != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit code {code}")
    return float(seconds), int(rss)
