"""Shared by the benchmark scripts: run a command in its own process and measure its wall time, CPU time and peak
RSS, optionally on chosen cores only."""

from __future__ import annotations

import subprocess
import sys
from typing import NamedTuple

# Linux keeps a process's peak RSS across exec, so a command started straight from a (large) benchmark
# process would report that process's peak. A small Python parent forks the command and reports its own peak.
_MEASURE = """
import os, sys, time
cpus = [int(c) for c in sys.argv[1].split(",") if c]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    if cpus:
        os.sched_setaffinity(0, cpus)  # the command and every thread it starts run on these cores only
    os.dup2(2, 1)  # the command's own output goes to stderr: stdout carries only the measurement
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
cpu = usage.ru_utime + usage.ru_stime
print(time.perf_counter() - start, usage.ru_maxrss * 1024, cpu, usage.ru_stime, usage.ru_minflt,
      os.waitstatus_to_exitcode(status))
"""


class Run(NamedTuple):
    seconds: float  # wall
    rss: int  # peak, bytes
    cpu_seconds: float  # user + system, all threads
    system_seconds: float  # system alone (page faults and unmapping are most of it)
    minor_faults: int  # pages faulted in without a read from disk: memory touched for the first time


def run_measured(command: list[str], cpus: list[int] | None = None, env: dict[str, str] | None = None) -> Run:
    """Wall seconds, peak RSS (bytes), CPU seconds and page faults of ``command``, on the cores ``cpus`` only if
    given, with the environment ``env`` if given; exits if it fails."""
    pinned = ",".join(map(str, cpus or []))
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, pinned, *command], capture_output=True, text=True, check=True, env=env
    )
    seconds, rss, cpu, system, faults, code = out.stdout.split()
    if int(code) != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit code {code}")
    return Run(float(seconds), int(rss), float(cpu), float(system), int(faults))
