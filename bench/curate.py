"""Benchmark: `skyfilter curate --recipe skywork-80k-v0.2` on a synthetic pool of the real sizes, end to end.

Pool (skyfilter's samples, in each dataset's exact layout, realistic text lengths): the three Magpie DPO sets
(98,000 rows each, five responses of about 1,800 characters), Magpie-Ultra (50,000), WildGuardMix (86,759 rows of
wildguardtrain, 56% of them prompt-only as in the real set, the rest refusal / compliance pairs: about 19,000
pairs), OffsetBias (8,504) and HelpSteer2 (20,324 rated responses, two per prompt). The files are written to a
mirror folder first (not timed); the command reads them with --data-dir and decontaminates Magpie-Ultra against
the RewardBench source prompts in ../shared/data/bench/rewardbench_sources (skyfilter's demo benchmark where that
is absent), copies of which are planted in up to a quarter of the Magpie-Ultra rows.

Measures, on this machine, in its own process: wall time, peak RSS, and the time of each step (from the
manifest). Target (issue): under 3 minutes and under 8 GiB.

Run: python bench/curate.py [--scale 1.0]
"""

from __future__ import annotations

import sys

# bench/select.py is named like the standard library's `select` module: the script's folder goes last on the path.
sys.path.append(sys.path.pop(0))

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import pyarrow.parquet as pq
from measure import run_measured
from skyfilter.io import demo_file, read_table
from skyfilter.recipe import load_recipe
from skyfilter.samples import sample_table

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "_data" / "curate"
BENCH = ROOT.parent / "shared" / "data" / "bench" / "rewardbench_sources" / "rewardbench_prompt_sources_all.jsonl"
SIZES = {
    "HelpSteer2": 20_324,
    "OffsetBias": 8_504,
    "WildGuardMix": 86_759,
    "Magpie-Ultra": 50_000,
    "Magpie-Pro-3.1": 98_000,
    "Magpie-Pro": 98_000,
    "Magpie-Air": 98_000,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the real sizes (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the mirror and the output in bench/_data")
    args = parser.parse_args()
    recipe = load_recipe("skywork-80k-v0.2")
    shutil.rmtree(WORK, ignore_errors=True)
    mirror = WORK / "mirror"
    mirror.mkdir(parents=True)
    bench = BENCH if BENCH.is_file() else Path(demo_file("demo_bench.jsonl"))
    # Magpie-Ultra gets benchmark prompts planted (a quarter of its rows at most), so decontamination finds some.
    benchmark_prompts = [p for p in read_table(bench).column("prompt").to_pylist() if p]
    start = time.perf_counter()
    total_bytes = 0
    for spec in recipe.sources:
        rows = max(16, int(SIZES[spec.name] * args.scale))
        copies = benchmark_prompts if spec.name == "Magpie-Ultra" else []
        table = sample_table(spec.adapter, spec.name, rows, generator=spec.generator_label, planted=rows // 50,
                             contaminated=copies)  # fmt: skip
        pq.write_table(table, mirror / f"{spec.name}.parquet")
        total_bytes += (mirror / f"{spec.name}.parquet").stat().st_size
        print(f"  {spec.name:<15} {rows:>8,} rows  {table.nbytes / 1e6:8,.0f} MB in memory", flush=True)
        del table
    print(f"pool written in {time.perf_counter() - start:.0f} s ({total_bytes / 1e9:.2f} GB of parquet), "
          f"{os.cpu_count()} cores\n")  # fmt: skip

    out = WORK / "out"
    command = [shutil.which("skyfilter") or "skyfilter", "curate", "--recipe", "skywork-80k-v0.2",
               "--data-dir", str(mirror), "--out", str(out)]  # fmt: skip
    command += ["--bench-file", str(bench)]
    try:
        seconds, rss = run_measured(command)[:2]
        manifest = json.loads((out / "manifest.json").read_text())
        print(f"{'skyfilter curate --recipe skywork-80k-v0.2 (end to end)':<60} {seconds:8.1f} s  "
              f"peak RSS {rss / 2**30:.2f} GiB")  # fmt: skip
        for step in manifest["steps"]:
            unit = "rows -> pairs" if step["step"] == "convert" else "pairs"
            out_count = step.get("pairs", step["rows_out"])
            print(f"  {step['step']:<14} {step['rows_in']:>9,} -> {out_count:>9,} {unit:<14} {step['seconds']:6.1f} s")
        print(f"  {'write':<14} {manifest['outputs']['data']['rows']:>22,} {'pairs':<14} "
              f"{manifest['outputs']['seconds']:6.1f} s  (data, dropped rows, report, plots)")  # fmt: skip
        print(f"\nbenchmark prompts: {bench}")
        verdict = "meets" if seconds < 180 and rss < 8 * 2**30 else "misses"
        print(f"target under 3 minutes and 8 GiB: {verdict} it")
    finally:
        if not args.keep:
            shutil.rmtree(WORK, ignore_errors=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
