"""Benchmark: skyrm.train against TRL's RewardTrainer on the same model, data, batch, steps and data order.

Data: real UltraFeedback pairs (../shared/data/prefs/ultrafeedback_binarized_1200, train split), byte-level
tokens, pairs longer than --max-length dropped on both sides (TRL's own filter; skyrm's `--truncation drop`), so
the lengths spread as they come (tens to --max-length tokens).
Model: a random-init Llama reward model (--hidden, --layers; byte-level vocabulary), saved once and loaded by both.
Training: --batch-pairs pairs per optimiser step, --steps steps, AdamW (betas 0.9 / 0.999), constant learning rate,
gradient clipping at 1, fp32 on the CPU. Both sides see the same pairs in every step: TRL is given the pairs in
skyrm's step order and a sequential sampler.

Each side runs in its own process (wall time and peak RSS measured from outside); tokens/s counts real
(non-padding) tokens over the training loop only. skyrm runs twice: packed rows with a block mask, and padded
micro-batches taken shortest first (its CPU setting); TRL pads each batch to its longest sequence.

Run: python bench/train.py [--steps 20 --batch-pairs 8 --max-length 1024 --micro-batch-tokens 2048
                            --hidden 256 --layers 4]
"""

from __future__ import annotations

import sys

# bench/select.py is named like the standard library's `select` module: the script's folder goes last on the path.
sys.path.append(sys.path.pop(0))

import argparse
import json
import shutil
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "prefs" / "ultrafeedback_binarized_1200"
SEED = 0


def prepare(args, work: Path) -> dict:
    """The model (saved), the kept pairs (parquet, for skyrm) and the same pairs in step order (for TRL)."""
    import pyarrow.parquet as pq
    import torch
    from skyrm.batching import step_plan
    from skyrm.data import encode_pairs, read_pairs
    from skyrm.model import tiny_config, tiny_tokenizer
    from transformers import LlamaForSequenceClassification

    tokenizer = tiny_tokenizer()
    torch.manual_seed(SEED)
    heads = max(1, args.hidden // 64)
    model = LlamaForSequenceClassification(tiny_config(
        pad_token_id=tokenizer.pad_token_id, hidden_size=args.hidden, intermediate_size=args.hidden * 8 // 3,
        num_hidden_layers=args.layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=max(2048, args.max_length)))  # fmt: skip
    model.save_pretrained(work / "model")
    tokenizer.save_pretrained(work / "model")
    table = read_pairs(str(DATA / "train_clean.jsonl"))
    encoded = encode_pairs(table, tokenizer, args.max_length, "drop")
    kept = table.take(encoded.rows)
    pq.write_table(kept, work / "pairs.parquet")
    plan = step_plan(len(encoded), args.batch_pairs, 1000.0, SEED)[: args.steps]
    order = [p for step in plan for p in step]
    pq.write_table(kept.take(order), work / "pairs_in_step_order.parquet")
    lengths = sorted(len(s) for p in order for s in (encoded.chosen[p], encoded.rejected[p]))
    return {"pairs": len(encoded), "dropped": dict(encoded.dropped), "parameters": sum(p.numel() for p in
            model.parameters()), "tokens": sum(lengths), "lengths": [lengths[0], lengths[len(lengths) // 2],
            lengths[-1]]}  # fmt: skip


def run_skyrm(args, work: Path, packing: bool) -> dict:
    from skyrm.config import load_config
    from skyrm.trainer import train

    out = work / f"skyrm-{'packed' if packing else 'padded'}"
    config = load_config(overrides={
        "model": str(work / "model"), "data": str(work / "pairs.parquet"), "output_dir": str(out),
        "max_length": args.max_length, "truncation": "drop", "packing": packing,
        "micro_batch_tokens": args.micro_batch_tokens, "batch_pairs": args.batch_pairs, "epochs": 1000.0,
        "max_steps": args.steps, "lr": args.lr, "schedule": "constant", "warmup_ratio": 0.0, "adam_beta2": 0.999,
        "weight_decay": 0.0, "grad_clip": 1.0, "dtype": "fp32", "seed": SEED, "report_to": "none",
        "checkpoint_every": 10**9,
    })  # fmt: skip
    train(config, log=lambda _: None)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    seconds = sum(r["tokens"] / r["tokens_per_s"] for r in records)
    return {"losses": [r["loss"] for r in records], "tokens": sum(r["tokens"] for r in records), "seconds": seconds}


def trl_in_order(table, model_dir: Path, config, callbacks=()):
    """TRL's RewardTrainer (fp32 weights) on the pairs of ``table`` in their order: a sequential sampler, so that
    it sees skyrm's step order. Its tokenized pairs are ``trainer.train_dataset``."""
    import datasets
    import torch
    import trl
    from skyrm.data import conversations
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    class InOrder(trl.RewardTrainer):
        def _get_train_sampler(self, *_, **__):
            return torch.utils.data.SequentialSampler(self.train_dataset)

    chosen, rejected = conversations(table)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32)
    return InOrder(model=model, args=config, processing_class=AutoTokenizer.from_pretrained(model_dir),
                   train_dataset=datasets.Dataset.from_dict({"chosen": chosen, "rejected": rejected}),
                   callbacks=list(callbacks))  # fmt: skip


def run_trl(args, work: Path) -> dict:
    import pyarrow.parquet as pq
    import trl

    table = pq.read_table(work / "pairs_in_step_order.parquet")
    config = trl.RewardConfig(
        output_dir=str(work / "trl"), report_to=[], use_cpu=True, max_length=args.max_length,
        per_device_train_batch_size=args.batch_pairs, max_steps=args.steps, learning_rate=args.lr,
        lr_scheduler_type="constant", warmup_steps=0, adam_beta1=0.9, adam_beta2=0.999, weight_decay=0.0,
        max_grad_norm=1.0, logging_steps=1, save_strategy="no", seed=SEED, bf16=False, disable_tqdm=True,
        dataloader_drop_last=True,
    )  # fmt: skip
    trainer = trl_in_order(table, work / "model", config)
    if len(trainer.train_dataset) != table.num_rows:
        raise SystemExit(f"TRL kept {len(trainer.train_dataset)} of {table.num_rows} pairs: the data differ")
    tokens = sum(len(trainer.train_dataset[i]["chosen_ids"]) + len(trainer.train_dataset[i]["rejected_ids"])
                 for i in range(args.steps * args.batch_pairs))  # fmt: skip
    result = trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"losses": losses, "tokens": tokens, "seconds": result.metrics["train_runtime"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-pairs", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--micro-batch-tokens", type=int, default=2048)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--side", choices=["skyrm-packed", "skyrm-padded", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:  # one side, in its own process: prints its result as JSON
        work = Path(args.work)
        if args.side == "trl":
            result = run_trl(args, work)
        else:
            result = run_skyrm(args, work, packing=args.side == "skyrm-packed")
        (work / f"{args.side}.json").write_text(json.dumps(result))
        return
    if not DATA.is_dir():
        sys.exit(f"needs the real data at {DATA}")
    from measure import run_measured

    work = Path(tempfile.mkdtemp(prefix="skyrm-bench-"))
    try:
        data = prepare(args, work)
        print(f"{data['pairs']:,} real pairs kept (dropped: {data['dropped']}), model {data['parameters']:,} "
              f"parameters, {args.steps} steps of {args.batch_pairs} pairs: {data['tokens']:,} tokens, sequence "
              f"lengths min / median / max {data['lengths']}\n")  # fmt: skip
        results = {}
        passed = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in ("side", "work")]
        for side in ("trl", "skyrm-padded", "skyrm-packed"):
            wall, rss = run_measured([sys.executable, __file__, *passed, "--side", side, "--work", str(work)])[:2]
            results[side] = {**json.loads((work / f"{side}.json").read_text()), "wall": wall, "rss": rss}
        print(f"{'side':<14} {'train s':>8} {'tokens/s':>10} {'wall s':>7} {'peak RSS':>9}  first / last losses")
        for side, r in results.items():
            print(f"{side:<14} {r['seconds']:8.1f} {r['tokens'] / r['seconds']:10,.0f} {r['wall']:7.1f} "
                  f"{r['rss'] / 2**20:7,.0f} MiB  {r['losses'][0]:.4f} / {r['losses'][-1]:.4f}")  # fmt: skip
        trl_rate = results["trl"]["tokens"] / results["trl"]["seconds"]
        print("\nthroughput over TRL's (tokens/s):")
        for side in ("skyrm-padded", "skyrm-packed"):
            r = results[side]
            worst = max(abs(a - b) for a, b in zip(r["losses"], results["trl"]["losses"], strict=True))
            print(f"  {side:<14} {r['tokens'] / r['seconds'] / trl_rate:5.2f}x   largest loss difference per step "
                  f"{worst:.2e}")  # fmt: skip
        print("\nloss per step (trl, skyrm-padded, skyrm-packed):")
        for step, values in enumerate(zip(*(results[s]["losses"] for s in results), strict=True), 1):
            print(f"  {step:3d}  " + "  ".join(f"{v:.5f}" for v in values))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
