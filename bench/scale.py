"""Benchmark: the ray engine against the local engine, per command, on the same cores.

Data: the 14,543 RMB pairs (../shared/data/prefs/rmb_pairwise) replicated to --rows rows (default 1,000,000) in
--shards parquet shards (default 16): copy k of a pair is the pair itself for even k and, for odd k, the pair with
its prompt extended by a short variant marker (a near duplicate), as bench/dedup.py makes them; a ``score`` column
(a number from the answer's length, with ties) is added for select.

Measures, in one run on this machine, each command as a user runs it (`skyfilter CMD SHARDS... --out ...`, in its
own process): the local engine with --threads W, and --engine ray on a Ray instance of W CPUs started once before
the runs (`ray start --head --num-cpus W`; its start-up time is reported apart); wall seconds, the ratio ray /
local, the driver's peak RSS, and the peak memory of the Ray processes (their private resident memory plus the shared
object store once, sampled every 0.2 s).
Both engines' outputs are compared (the same rows in the same order), so a figure never comes from a wrong answer.

Run: python bench/scale.py [--rows 1000000] [--shards 16] [--workers W] [--commands contaminate,select,dedup]
                           [--data DIR] [--workers-sweep 1,2,4,8,16]

--workers-sweep runs the ray engine alone with 1, 2, 4, ... CPUs (a new Ray instance each) for the scaling curve
(on a machine with that many cores), printing the parallel efficiency t(1) / (n t(n)).
"""

from __future__ import annotations

import sys

# bench/select.py is named like the standard library's `select`, and Python puts this folder first on the path:
# move it last, so that the standard library wins and the sibling modules are still found.
sys.path.append(sys.path.pop(0))

import argparse
import gzip
import io
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq
from measure import run_measured

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RMB = SHARED / "prefs/rmb_pairwise/rmb_pairwise.jsonl.gz"
BENCH = SHARED / "bench/rewardbench_sources/rewardbench_prompt_sources_all.jsonl"
SKYFILTER = [sys.executable, "-m", "skyfilter.cli"]


def make_shards(folder: Path, rows: int, shards: int) -> list[str]:
    """RMB replicated to ``rows`` rows (odd copies: a near duplicate) in ``shards`` parquet files (cached)."""
    files = [folder / f"rmb-{i:03d}.parquet" for i in range(shards)]
    marker = folder / f".rows-{rows}"
    if marker.exists() and all(f.exists() for f in files):
        return [str(f) for f in files]
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    base = pajson.read_json(io.BytesIO(gzip.decompress(RMB.read_bytes())))
    answers = pc.struct_field(base.column("chosen").combine_chunks(), "answer")
    base = base.append_column("score", pc.cast(pc.divide(pc.utf8_length(answers), 200), pa.float64()))
    turns = base.column("conversation_input").combine_chunks()
    copies = []
    for k in range((rows + len(base) - 1) // len(base)):
        table = base
        if k % 2:  # the first turn's text gets a variant marker: a near duplicate of copy 0
            first = pc.list_element(turns, 0)
            content = pc.binary_join_element_wise(pc.struct_field(first, "content"), f" (variant {k})", "")
            fields = [content if f.name == "content" else pc.struct_field(first, f.name) for f in first.type]
            first = pa.StructArray.from_arrays(fields, fields=list(first.type))
            rest = pc.list_slice(turns, 1)
            lists = [[a] + b for a, b in zip(first.to_pylist(), rest.to_pylist(), strict=True)]
            table = table.set_column(1, "conversation_input", pa.array(lists, turns.type))
        copies.append(table)
    data = pa.concat_tables(copies).slice(0, rows)
    for i, f in enumerate(files):
        start, stop = i * rows // shards, (i + 1) * rows // shards
        pq.write_table(data.slice(start, stop - start), f, row_group_size=65_536)
    marker.touch()
    return [str(f) for f in files]


class RaySampler:
    """The peak memory of the Ray processes (workers, raylet, GCS) while it runs: the sum of their private resident
    memory (RSS less shared pages, from /proc/PID/statm: cheap to read every 0.2 s) plus the largest shared part
    once (the object store's shared memory, which every worker maps)."""

    def __init__(self) -> None:
        import psutil

        self.psutil, self.peak, self._stop = psutil, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            private, shared = 0, 0
            for p in self.psutil.process_iter(["cmdline", "memory_info"]):
                line = " ".join(p.info["cmdline"] or [])
                memory = p.info["memory_info"]
                if memory is not None and ("ray::" in line or "raylet" in line or "gcs_server" in line):
                    private += memory.rss - memory.shared
                    shared = max(shared, memory.shared)
            self.peak = max(self.peak, private + shared)
            time.sleep(0.2)

    def __enter__(self) -> RaySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def command(name: str, shards: list[str], out: Path, threads: int) -> list[str]:
    args = {
        "contaminate": ["contaminate", *shards, "--bench-file", str(BENCH)],
        "select": ["select", *shards, "--score", "score", "--group-by", "rmb_category", "--top-default", "0.3"],
        "dedup": ["dedup", *shards],
    }[name]
    return [*SKYFILTER, *args, "--out", str(out), "--threads", str(threads), "-q"]


def read_output(path: Path) -> pa.Table:
    if path.is_dir():
        return pa.concat_tables([pq.read_table(p) for p in sorted(path.glob("part-*.parquet"))])
    return pq.read_table(path)


def start_ray(cpus: int) -> float:
    """Starts a Ray instance of ``cpus`` CPUs on this machine (the commands find it: RAY_ADDRESS=auto); seconds."""
    start = time.perf_counter()
    subprocess.run(
        ["ray", "start", "--head", f"--num-cpus={cpus}", "--include-dashboard=false", "--disable-usage-stats"],
        capture_output=True, check=True,
    )  # fmt: skip
    os.environ["RAY_ADDRESS"] = "auto"
    return time.perf_counter() - start


def stop_ray() -> None:
    subprocess.run(["ray", "stop", "--force"], capture_output=True, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--commands", default="contaminate,select,dedup")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "skyfilter-scale")
    parser.add_argument("--workers-sweep", help="comma-separated CPU counts for the ray engine's scaling curve")
    args = parser.parse_args()
    if not RMB.exists():
        raise SystemExit(f"{RMB} not found (../shared/data from the project root)")
    shards = make_shards(args.data / f"rmb-{args.rows}", args.rows, args.shards)
    names = args.commands.split(",")
    print(f"data: {args.rows:,} RMB rows in {args.shards} parquet shards; {args.workers} cores for each engine")
    work = Path(tempfile.mkdtemp(prefix="skyfilter-scale-"))
    try:
        if args.workers_sweep:
            sweep(names, shards, work, [int(w) for w in args.workers_sweep.split(",")])
            return
        stop_ray()
        startup = start_ray(args.workers)
        print(f"ray start --head --num-cpus={args.workers}: {startup:.1f} s (once, not in the figures below)\n")
        print(f"{'command':<12} {'local s':>8} {'ray s':>8} {'ray/local':>9} {'local peak':>11} "
              f"{'ray driver':>11} {'ray processes':>14}")  # fmt: skip
        for name in names:
            local_out, ray_out = work / f"{name}-local.parquet", work / f"{name}-ray"
            local_s, local_rss = run_measured(command(name, shards, local_out, args.workers))[:2]
            with RaySampler() as sampler:
                ray_s, ray_rss = run_measured([*command(name, shards, ray_out, args.workers), "--engine", "ray"])[:2]
            same = read_output(local_out).equals(read_output(ray_out))
            print(
                f"{name:<12} {local_s:>8.1f} {ray_s:>8.1f} {ray_s / local_s:>8.2f}x {local_rss / 2**30:>9.2f} G "
                f"{ray_rss / 2**30:>9.2f} G {sampler.peak / 2**30:>12.2f} G{'' if same else '  OUTPUTS DIFFER'}"
            )
            if not same:
                raise SystemExit(f"{name}: the ray engine's output differs from the local engine's")
    finally:
        stop_ray()
        shutil.rmtree(work, ignore_errors=True)


def sweep(names: list[str], shards: list[str], work: Path, counts: list[int]) -> None:
    print(f"{'command':<12} " + " ".join(f"{f'{n} cpu':>9}" for n in counts) + "   efficiency at the last")
    for name in names:
        times = []
        for n in counts:
            stop_ray()
            start_ray(n)
            out = work / f"{name}-{n}"
            times.append(run_measured([*command(name, shards, out, n), "--engine", "ray"])[0])
            shutil.rmtree(out, ignore_errors=True)
        efficiency = times[0] / (counts[-1] / counts[0] * times[-1])
        print(f"{name:<12} " + " ".join(f"{t:>8.1f}s" for t in times) + f"   {efficiency:.2f}")


if __name__ == "__main__":
    main()
