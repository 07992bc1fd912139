"""Benchmark: the first install, part by part, each in a fresh virtual environment with empty caches.

Every part runs in a temporary folder of its own (removed after it): a new `python -m venv`, an empty pip cache
(PIP_CACHE_DIR), a fresh CARGO_TARGET_DIR and an empty CARGO_HOME, so the crates are downloaded from crates.io
as on a new machine (the Rust toolchain itself is the one installed). Parts (--parts, comma-separated):

  rust   the Rust build as pip runs it: `pip wheel . --no-deps` (maturin's build backend, downloaded into the
         empty cache, then cargo with the profile pip uses: [profile.release]); --build-args passes maturin
         arguments, e.g. --build-args='--profile NAME' for another profile of Cargo.toml
  deps   the dependencies of '.[train]' without the package: torch from PyPI (with its CUDA wheels), and, where
         PyTorch's CPU wheel index is reachable, torch from that index first, then the rest
  all    the whole `pip install '.[train]'` (and, where the CPU index is reachable, with CPU torch first)
  cuda   only the CUDA wheels that torch from PyPI pulls (nvidia-*, cuda-*, triton, at the versions pip picks for
         '.[train]', --no-deps): what installing the CPU build of torch saves at least (the CUDA build of torch's
         own wheel is larger too), measurable where PyTorch's CPU index is not reachable
  sizes  installs nothing: what pip would download for the dependencies of '.[train]' (`pip install --dry-run
         --report`), each wheel's size from the index's Content-Length, grouped as torch, the CUDA wheels
         (nvidia-*, cuda-*, triton) and the rest; and the CPU torch wheel where PyTorch's CPU index is reachable

The table: wall seconds, CPU seconds (user + sys of every process the part started: pip, maturin, cargo,
rustc), GB downloaded and GB installed (the venv; for `rust`, the wheel). Downloads are counted as the sizes
(Content-Length) of the wheels in pip's --report of the install, plus the crates in CARGO_HOME; maturin, which
pip fetches for the build, is left out (a few MB). The pip cache is no measure: the registry here sends no
caching headers, so pip caches nothing. Other work on the machine slows the wall time, less so the
CPU time: the load average is printed before and after each part.

Run: python bench/install.py [--parts rust,sizes,cuda,deps,all] [--build-args ARGS] [--tmp DIR]
"""

from __future__ import annotations

import sys

# bench/select.py is named like the standard library's `select`, and Python puts this folder first on the path:
# move it last, so that the standard library wins and the sibling modules are still found.
sys.path.append(sys.path.pop(0))

import argparse
import json
import os
import resource
import shutil
import subprocess
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PARTS = ("rust", "sizes", "cuda", "deps", "all")


def train_requirements() -> list[str]:
    """The dependencies of '.[train]' as pyproject.toml lists them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["dependencies"] + project["optional-dependencies"]["train"]


def cpu_index_reachable() -> bool:
    try:
        with urllib.request.urlopen(f"{CPU_INDEX}/torch/", timeout=15) as response:
            return response.status == 200
    except OSError:
        return False


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) if path.exists() else 0


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"


class Sandbox:
    """A temporary folder with a fresh venv, pip cache, cargo home and target dir; removed on exit."""

    def __init__(self, parent: str | None):
        self.root = Path(tempfile.mkdtemp(prefix="skyfilter-install-", dir=parent))
        self.venv = self.root / "venv"
        self.env = dict(
            os.environ,
            PIP_CACHE_DIR=str(self.root / "pip-cache"),
            CARGO_HOME=str(self.root / "cargo-home"),
            CARGO_TARGET_DIR=str(self.root / "target"),
            PIP_DISABLE_PIP_VERSION_CHECK="1",
        )
        self.env.pop("VIRTUAL_ENV", None)
        # The rustup proxies (cargo, rustc) stay on PATH; only the crates and the build start empty.
        try:  # not from the caller's folder: from bench/, `-m venv` would import bench/select.py as `select`
            subprocess.run([sys.executable, "-m", "venv", str(self.venv)], cwd=self.root, check=True)
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        self.python = str(self.venv / "bin" / "python")

    def pip(self, *args: str) -> list[str]:
        return [self.python, "-m", "pip", *args]

    def crates(self) -> int:
        return folder_bytes(self.root / "cargo-home")

    def installed(self) -> int:
        return folder_bytes(self.venv)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def run_timed(commands: list[list[str]], env: dict[str, str]) -> tuple[float, float]:
    """Runs the commands one after the other (each must succeed); wall and CPU seconds (user + sys of all the
    processes they started and waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    for command in commands:
        print("  $", " ".join(command), flush=True)
        subprocess.run(command, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def cuda_bytes(venv: Path) -> int:
    """Bytes of the CUDA libraries in a venv's site-packages (nvidia/, cuda*/ and triton/)."""
    site = next((venv / "lib").glob("python3*/site-packages"))
    return sum(folder_bytes(p) for pattern in ("nvidia", "cuda*", "triton") for p in site.glob(pattern) if p.is_dir())


Row = tuple[str, float | None, float | None, float | None, float | None, str]


def part_rust(args) -> list[Row]:
    with Sandbox(args.tmp) as box:
        wheels = box.root / "wheels"
        command = box.pip("wheel", ".", "--no-deps", "-w", str(wheels))
        if args.build_args:
            command.append(f"--config-settings=build-args={args.build_args}")
        print(f"- rust: load {load()}", flush=True)
        wall, cpu = run_timed([command], box.env)
        built = ", ".join(str(so.parent.relative_to(box.root)) for so in (box.root / "target").rglob("lib_core.so"))
        note = f"pip wheel . --no-deps {args.build_args}".strip() + f"; built in {built}; load after {load()}"
        return [("rust: the extension's build", wall, cpu, box.crates() / 1e9, folder_bytes(wheels) / 1e9, note)]


def install_row(args, label: str, installs: list[list[str]]) -> Row:
    """`pip install` of each of ``installs`` in turn, in one fresh venv."""
    with Sandbox(args.tmp) as box:
        print(f"- {label}: load {load()}", flush=True)
        reports = [box.root / f"report-{i}.json" for i in range(len(installs))]
        commands = [box.pip("install", "--report", str(r), *reqs) for r, reqs in zip(reports, installs, strict=True)]
        wall, cpu = run_timed(commands, box.env)
        downloaded = sum(size for r in reports for _, size in wheel_sizes(json.loads(r.read_text()))) + box.crates()
        note = f"of which CUDA libraries {cuda_bytes(box.venv) / 1e9:.2f} GB installed; load after {load()}"
        return label, wall, cpu, downloaded / 1e9, box.installed() / 1e9, note


def part_installs(args, cpu_index: bool, what: str, requirements: list[str]) -> list[Row]:
    """``requirements`` in a fresh venv; and again with torch from PyTorch's CPU index first, if reachable."""
    rows = [install_row(args, f"{what}, torch from PyPI", [requirements])]
    if cpu_index:
        rows.append(install_row(args, f"{what}, CPU torch first", [["torch", "--index-url", CPU_INDEX], requirements]))
    return rows


def part_cuda(args) -> list[Row]:
    """Only the CUDA wheels of torch from PyPI, at the versions pip picks for '.[train]', without dependencies."""
    items = [item["metadata"] for item in dry_run(train_requirements())["install"] if is_cuda(item["metadata"]["name"])]
    pins = [f"{meta['name']}=={meta['version']}" for meta in items]
    return [install_row(args, f"cuda: the {len(pins)} CUDA wheels alone", [["--no-deps", *pins]])]


def dry_run(pip_args: list[str]) -> dict:
    """The --report of `pip install --dry-run`: what it would install here (it installs nothing)."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report", "-",
         *pip_args],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def wheel_sizes(report: dict) -> list[tuple[str, int]]:
    """(name, bytes) of each file that a pip --report says was (or would be) downloaded: its Content-Length."""
    sizes = []
    for item in report["install"]:
        url = item["download_info"]["url"]
        if url.startswith("http"):  # not the local project (file://)
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=60) as response:
                sizes.append((item["metadata"]["name"].lower(), int(response.headers["Content-Length"])))
    return sizes


def is_cuda(name: str) -> bool:
    return name.lower().startswith(("nvidia-", "cuda-")) or name.lower() == "triton"


def part_sizes(cpu_index: bool) -> list[Row]:
    wheels = wheel_sizes(dry_run(train_requirements()))
    groups = {"torch": 0, "cuda": 0, "rest": 0}
    for name, size in wheels:
        groups["torch" if name == "torch" else "cuda" if is_cuda(name) else "rest"] += size
    cuda_names = sorted(name for name, _ in wheels if is_cuda(name))
    rows: list[Row] = [
        (what, None, None, groups[key] / 1e9, None, note)
        for what, key, note in (
            ("sizes: torch wheel (PyPI)", "torch", ""),
            ("sizes: CUDA wheels torch pulls", "cuda", f"{len(cuda_names)} wheels: {', '.join(cuda_names)}"),
            ("sizes: the other deps of '.[train]'", "rest", f"{len(wheels) - len(cuda_names) - 1} wheels"),
        )
    ]
    if cpu_index:
        cpu = dict(wheel_sizes(dry_run(["torch", "--index-url", CPU_INDEX])))
        rows.append(("sizes: torch wheel (CPU index)", None, None, cpu["torch"] / 1e9, None, ""))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--build-args", default="", help="maturin arguments for the rust part, e.g. '--profile NAME'")
    parser.add_argument("--tmp", help="where the temporary folders go (default: the system's; `all` needs ~15 GB)")
    args = parser.parse_args()
    parts = args.parts.split(",")
    if unknown := set(parts) - set(PARTS):
        parser.error(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")

    cpu_index = cpu_index_reachable()
    print(f"# {os.cpu_count()} cores; load {load()}; Python {sys.version.split()[0]}")
    print(f"# PyTorch's CPU wheel index {CPU_INDEX}: {'reachable' if cpu_index else 'NOT reachable from here'}")
    rows: list[Row] = []
    for part in parts:
        if part == "rust":
            rows += part_rust(args)
        elif part == "sizes":
            rows += part_sizes(cpu_index)
        elif part == "cuda":
            rows += part_cuda(args)
        elif part == "deps":
            rows += part_installs(args, cpu_index, "deps: the dependencies of '.[train]'", train_requirements())
        else:
            rows += part_installs(args, cpu_index, "all: pip install '.[train]'", [".[train]"])

    def cell(value: float | None, digits: int) -> str:
        return "" if value is None else f"{value:,.{digits}f}"

    print()
    print("| part | wall s | CPU s | GB downloaded | GB installed | note |")
    print("|---|---:|---:|---:|---:|---|")
    for what, wall, cpu, down, installed, note in rows:
        print(f"| {what} | {cell(wall, 0)} | {cell(cpu, 0)} | {cell(down, 2)} | {cell(installed, 2)} | {note} |")


if __name__ == "__main__":
    main()
