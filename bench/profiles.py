"""Benchmark: the Cargo profiles of the extension, clean build time against the kernels' speed.

For each variant: a clean `cargo build -p skyfilter-py` in a fresh CARGO_TARGET_DIR (wall and CPU seconds: user +
sys of cargo and every rustc), then the kernels timed with each build's extension, interleaved (A B A B ...) so
that a change in the machine's load hits every variant alike; per variant the median over the rounds and the
spread (lowest-highest).

A variant is a profile of Cargo.toml (`release`: what `pip install .` and the wheels build) or
`LTO/UNITS`, the release profile with its lto and codegen-units overridden (CARGO_PROFILE_RELEASE_LTO and
CARGO_PROFILE_RELEASE_CODEGEN_UNITS): `fat/1`, `thin/16`, `false/16` (cargo's default: LTO within the crate only),
`off/16` (none). `NAME=PATH` takes an extension built before (a lib_core.so) and builds nothing.

The kernels, on the real data, one thread each (RAYON_NUM_THREADS=1) so that the machine's other users matter
less; each timed three times in its process, the fastest kept (CPU seconds, the process's user + sys):
  contam   the contamination kernel (skywork preset) on --rows RMB prompts, as bench/contaminate.py --kernel-only
  keys     _core.row_keys of prompt, chosen and rejected on --dedup-rows pairs, as bench/dedup.py's exact keys
  near     _core.MinHasher(128, 5).signatures and the LSH clusters on the same pairs, as bench/dedup.py's near line

With --command-rows N, each round also runs the `skyfilter contaminate` command with each build, on every core,
parquet to parquet on N RMB prompts (as bench/contaminate.py's command lines): wall seconds, system seconds, minor
page faults and peak RSS, the median over the rounds, and the wall time against the first variant's in the same
round. It measures what the kernels' CPU time does not: the reader, the writer and the memory they touch.

Run: python bench/profiles.py [--variants release thin/16 false/16] [--rounds 5] [--rows 300000] [--dedup-rows 50000]
                              [--command-rows 1000000]
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
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from measure import Run, run_measured

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
KERNELS = ("contam", "keys", "near")


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def build(variant: str, target: Path) -> tuple[Path, float, float]:
    """A clean build of the extension for ``variant``; the library, wall and CPU seconds."""
    env = dict(os.environ, CARGO_TARGET_DIR=str(target))
    if "/" in variant:
        lto, units = variant.split("/")
        env.update(CARGO_PROFILE_RELEASE_LTO=lto, CARGO_PROFILE_RELEASE_CODEGEN_UNITS=units)
        profile = "release"
    else:
        profile = variant
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(["cargo", "build", "--profile", profile, "-p", "skyfilter-py", "-q"], env=env, cwd=ROOT, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return target / profile / "lib_core.so", wall, cpu


def package_with(library: Path, folder: Path) -> Path:
    """A copy of python/ with ``library`` as skyfilter._core: the PYTHONPATH that runs it."""
    shutil.copytree(ROOT / "python", folder, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    shutil.copy(library, folder / "skyfilter" / "_core.abi3.so")
    return folder


def fastest(fn, repeats: int = 3) -> float:
    """The lowest CPU seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


def time_kernels(rows: int, dedup_rows: int) -> dict[str, float]:
    """Runs in a child process with one build's extension on the path."""
    import pyarrow.compute as pc
    from contaminate import BENCH_FILES, rmb_prompts
    from dedup import COLUMNS, flat_pairs, replicate
    from skyfilter import Matcher, _core, load_benchmark
    from skyfilter.dedup import lsh_params

    prompts, _ = rmb_prompts(rows)
    benchmarks = [load_benchmark(path, subset_column=subset) for path, subset in BENCH_FILES]
    matcher = Matcher(benchmarks, preset="skywork")
    table, _ = replicate(flat_pairs(), dedup_rows)
    columns = [table.column(c).combine_chunks() for c in COLUMNS]
    texts = pc.binary_join_element_wise(*columns, "\n")
    bands, rows_per_band = lsh_params(0.7, 128)

    def near() -> None:
        lsh = _core.NearDedup(128, bands, rows_per_band, 0.7)
        lsh.add(_core.MinHasher(128, 5).signatures(texts))
        lsh.clusters()

    return {
        "contam": fastest(lambda: matcher.index.match_rows(prompts, threads=1)),
        "keys": fastest(lambda: [_core.row_keys(c) for c in columns]),
        "near": fastest(near),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["release", "thin/16", "false/16"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--dedup-rows", type=int, default=50_000)
    parser.add_argument("--command-rows", type=int, default=0, help="also time the contaminate command on N rows")
    parser.add_argument("--kernels", action="store_true", help=argparse.SUPPRESS)  # the child process's part
    args = parser.parse_args()
    if args.kernels:
        print(json.dumps(time_kernels(args.rows, args.dedup_rows)))
        return
    if not DATA.is_dir():
        raise SystemExit(f"needs the real data at {DATA}")

    print(f"# {os.cpu_count()} cores; load {load()}")
    builds: dict[str, tuple[float | None, float | None, int]] = {}
    paths: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="skyfilter-profiles-") as tmp:
        for i, variant in enumerate(args.variants):
            name, _, prebuilt = variant.partition("=")
            if prebuilt:
                library, wall, cpu = Path(prebuilt), None, None
            else:
                print(f"- building {name} (load {load()})", flush=True)
                library, wall, cpu = build(name, Path(tmp) / f"target-{i}")
                print(f"  {wall:,.0f} s wall, {cpu:,.0f} s CPU (load {load()})", flush=True)
            builds[name] = (wall, cpu, library.stat().st_size)
            paths[name] = package_with(library, Path(tmp) / f"python-{i}")

        times: dict[str, dict[str, list[float]]] = {name: {k: [] for k in KERNELS} for name in paths}
        commands: dict[str, list[Run]] = {name: [] for name in paths}
        child = [sys.executable, __file__, "--kernels", "--rows", str(args.rows), "--dedup-rows", str(args.dedup_rows)]
        if args.command_rows:
            from contaminate import command_args, rmb_prompts, write_command_input

            write_command_input(rmb_prompts(args.command_rows)[0], Path(tmp) / "prompts.parquet")
            os.sync()
            skyfilter = [
                str(Path(sys.executable).parent / "skyfilter"),
                *command_args(Path(tmp) / "prompts.parquet", Path(tmp)),
            ]
        for r in range(args.rounds):
            for name, path in paths.items():
                env = dict(os.environ, PYTHONPATH=str(path), RAYON_NUM_THREADS="1")
                out = subprocess.run(child, env=env, check=True, capture_output=True, text=True)
                result = json.loads(out.stdout)
                for k in KERNELS:
                    times[name][k].append(result[k])
                print(f"  round {r + 1} {name}: " + ", ".join(f"{k} {result[k]:.3f} s" for k in KERNELS), flush=True)
                if args.command_rows:
                    run = run_measured(skyfilter, env=dict(os.environ, PYTHONPATH=str(path)))
                    commands[name].append(run)
                    print(f"  round {r + 1} {name}: command {run.seconds:.2f} s wall, {run.system_seconds:.2f} s "
                          f"system, {run.minor_faults:,} faults, peak RSS {run.rss / 2**20:,.0f} MiB")  # fmt: skip

    # Against the first variant: the ratio within each round (the two ran back to back, under about the same
    # load), median (lowest-highest) over the rounds.
    first = next(iter(times))
    print(f"\n# load after: {load()}; kernel CPU seconds, median (lowest-highest) of {args.rounds} rounds;")
    print(f"# time / {first}'s time in the same round, median (lowest-highest)\n")
    print("| variant | build wall s | build CPU s | lib MB | " + " | ".join(KERNELS) + f" | vs {first} |")
    print("|---|---:|---:|---:|" + "---:|" * len(KERNELS) + "---|")
    for name, (wall, cpu, size) in builds.items():
        cells, ratios = [], []
        for k in KERNELS:
            values = times[name][k]
            cells.append(f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})")
            paired = [a / b for a, b in zip(values, times[first][k], strict=True)]
            ratios.append(f"{k} {statistics.median(paired):.3f} ({min(paired):.2f}-{max(paired):.2f})")
        built = f"{wall:,.0f} | {cpu:,.0f}" if wall is not None else "- | -"
        print(f"| {name} | {built} | {size / 1e6:.1f} | " + " | ".join(cells) + f" | {', '.join(ratios)} |")
    if args.command_rows:
        print(f"\n# skyfilter contaminate, {args.command_rows:,} prompts, parquet -> parquet, {os.cpu_count()} cores: "
              f"median of {args.rounds} rounds\n")  # fmt: skip
        print(f"| variant | wall s | system s | minor faults | peak RSS MiB | wall / {first}'s, same round |")
        print("|---|---:|---:|---:|---:|---|")
        for name, runs in commands.items():
            paired = [a.seconds / b.seconds for a, b in zip(runs, commands[first], strict=True)]
            print(f"| {name} | {statistics.median(r.seconds for r in runs):.2f} | "
                  f"{statistics.median(r.system_seconds for r in runs):.2f} | "
                  f"{statistics.median(r.minor_faults for r in runs):,.0f} | "
                  f"{statistics.median(r.rss for r in runs) / 2**20:,.0f} | "
                  f"{statistics.median(paired):.3f} ({min(paired):.2f}-{max(paired):.2f}) |")  # fmt: skip


if __name__ == "__main__":
    main()
