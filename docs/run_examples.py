"""Runs the examples of the documentation as written: ``python docs/run_examples.py [FILE.md ...]``.

Every fenced ``bash`` and ``python`` block of each file (default: every ``docs/*.md`` but benchmarks.md, whose
commands are the benchmarks themselves) runs in order in one scratch folder per file, so a block may use what an
earlier one wrote. ``../shared`` in the scratch folder is this checkout's ``../shared``, so the examples' paths to
the real data work. A block whose first line is ``# not run here: REASON`` is listed as skipped with its reason;
one whose first line is ``# needs package: MODULE (...)`` is skipped where MODULE does not import.
Prints one line per block (file, line, status, seconds) and exits 1 if any block failed; ``--keep`` leaves the
scratch folders for a look.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = "# not run here:"
NEEDS = "# needs package:"
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks(path: Path) -> list[tuple[int, str, str]]:
    """(line, language, code) of every bash and python block in ``path``."""
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2)) for m in BLOCK.finditer(text)]


def run_file(path: Path, scratch: Path) -> list[tuple[str, int, str, float, str]]:
    work = scratch / path.stem / "work"
    work.mkdir(parents=True)
    shared = ROOT.parent / "shared"
    if shared.exists():
        (work.parent / "shared").symlink_to(shared)
    results = []
    for line, language, code in blocks(path):
        if code.startswith(SKIP):
            results.append((path.name, line, "skipped", 0.0, code.splitlines()[0][len(SKIP) :].strip()))
            continue
        if code.startswith(NEEDS):
            module = code.splitlines()[0][len(NEEDS) :].split()[0]
            if importlib.util.find_spec(module) is None:
                results.append((path.name, line, "skipped", 0.0, f"{module} is not installed"))
                continue
        command = ["bash", "-euo", "pipefail", "-c", code] if language == "bash" else [sys.executable, "-c", code]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=work, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        detail = "" if done.returncode == 0 else (done.stderr or done.stdout).strip()[-1500:]
        results.append((path.name, line, "ok" if done.returncode == 0 else "FAILED", seconds, detail))
        print(f"{path.name}:{line:<5} {results[-1][2]:<8} {seconds:7.1f} s  {detail}", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the scratch folders")
    args = parser.parse_args()
    files = args.files or sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "benchmarks.md")
    scratch = Path(tempfile.mkdtemp(prefix="doc-examples-"))
    try:
        results = [r for f in files for r in run_file(f.resolve(), scratch)]
    finally:
        if args.keep:
            print(f"scratch folders: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print("\nfile:line      status     seconds")
    for name, line, status, seconds, detail in results:
        print(f"{name}:{line:<5} {status:<8} {seconds:7.1f} s" + (f"  ({detail})" if status == "skipped" else ""))
    failed = sum(r[2] == "FAILED" for r in results)
    ran = sum(r[2] != "skipped" for r in results)
    print(f"\n{ran} blocks run, {failed} failed, {len(results) - ran} not run here")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
