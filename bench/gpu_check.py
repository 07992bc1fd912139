"""GPU check of skyrm (issue 8): FSDP2 bf16 training throughput and MFU, TRL's RewardTrainer on the same work,
bf16 numerics and evaluation throughput, printed as one table (and written as JSON with --out).

On the lent GPU machine (Python 3.12, torch, transformers, pyarrow; no network), from the repository root:

    bash bench/gpu_check.sh            # installs the carried wheels for TRL if any, then runs this script

Parts (each in its own process, so that peak memory is per run):

1. training throughput of random-init Llama reward models shaped like Llama-3.2-1B and Llama-3.2-3B (vocabulary
   128,256), bf16 compute with fp32 master weights under FSDP2 on one GPU, max length 4,096: packed rows under
   flex attention with a BlockMask (for the first model also with compiled layers, ``--compile``, and with Liger's
   fused kernels, ``--liger-kernels``, when the liger_kernel package is there; on a CPU, which
   has no flex backward, under a dense block mask instead) and padded rows: tokens/s, MFU (6 x non-embedding
   parameters + causal attention per token, against the card's bf16 peak), peak memory. The first step (warm-up,
   allocation, compilation) is left out of the rates.
2. TRL's RewardTrainer with the same model, pairs, steps and batch (bf16, its padding to the longest sequence),
   when trl imports: tokens/s and the ratio.
3. numerics: the rewards of packed rows (flex attention, a dense block mask) and padded rows (sdpa, eager) of the
   same pairs, max difference, in bf16 and in fp32 with the same weights; the loss curve of
   the tiny model trained in bf16 on the GPU against fp32 on the CPU; the exported model's held-out rewards as
   Hugging Face's own forward reads them (the last token that is not the pad, as the official RewardBench runner,
   TRL and vLLM do) against the ones measured in training (mean, std and accuracy).
4. evaluation throughput (pairs/s) of the 1B model on the synthetic RewardBench-layout sample.

Data: real UltraFeedback pairs from ../shared/data or the copy carried in bench/wheels/ (byte-level tokens, pairs
over the max length dropped: lengths as they come), else synthetic pairs whose prompt and answer lengths follow the
same spread (quantiles measured on that file). ``--reduced`` runs everything with tiny shapes and few steps on the
CPU in fp32: the test suite does that (tests/skyrm/test_gpu_check.py).

Run: python bench/gpu_check.py [--reduced] [--models 1b,3b] [--steps 6] [--batch-pairs 32] [--out FILE.json]
"""

from __future__ import annotations

import sys

sys.path.append(sys.path.pop(0))  # bench/select.py shadows the standard library's select module

import argparse
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UF_NAME = "ultrafeedback_binarized_1200/train_clean.jsonl"
#: the real pairs: beside the checkout, or the copy carried to the GPU machine in bench/wheels/ (gpu_check.sh)
UF_PLACES = [ROOT.parent / "shared" / "data" / "prefs" / UF_NAME, ROOT / "bench" / "wheels" / "train_clean.jsonl"]
SEED = 0

#: Llama-3.2 shapes (hidden, MLP, layers, heads, KV heads) with Llama-3's vocabulary; "reduced" for the CPU test.
SHAPES = {
    "1b": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
           "num_key_value_heads": 8, "vocab_size": 128_256, "rope_theta": 500_000.0},
    "3b": {"hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 28, "num_attention_heads": 24,
           "num_key_value_heads": 8, "vocab_size": 128_256, "rope_theta": 500_000.0},
    "reduced": {"hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "vocab_size": 512},
}  # fmt: skip

#: 5% quantiles of the characters of UltraFeedback's prompts, chosen and rejected answers (train_clean.jsonl).
LENGTH_QUANTILES = {
    "prompt": [17, 40, 54, 69, 87, 109, 134, 173, 219, 279, 363, 411, 493, 584, 672, 801, 1000, 1267, 1769, 2534, 6308],
    "chosen": [1, 19, 63, 102, 162, 221, 301, 450, 576, 757, 907, 1124, 1328, 1608, 1866, 2107, 2398, 2635, 2970, 3512,
               5487],
    "rejected": [1, 33, 74, 125, 186, 266, 354, 454, 535, 665, 810, 984, 1154, 1341, 1520, 1743, 2024, 2284, 2514,
                 3018, 4887],
}  # fmt: skip
_WORDS = ["the", "model", "answer", "reward", "step", "data", "token", "batch", "river", "light", "number", "signal",
          "planet", "garden", "market", "energy", "because", "however", "explain", "design"]  # fmt: skip


def synthetic_pairs(n: int, seed: int) -> list[dict]:
    """Pairs of random words whose lengths follow UltraFeedback's spread (linear between its 5% quantiles)."""
    rng = random.Random(seed)

    def text(kind: str) -> str:
        q, u = LENGTH_QUANTILES[kind], rng.random() * 20
        i = min(int(u), 19)
        chars = int(q[i] + (q[i + 1] - q[i]) * (u - i))
        words = []
        while sum(len(w) + 1 for w in words) < chars:
            words.append(rng.choice(_WORDS))
        return " ".join(words)[: max(1, chars)]

    return [{"prompt": text("prompt"), "chosen": text("chosen"), "rejected": text("rejected")} for _ in range(n)]


# ------------------------------------------------------------------------------------------------ preparation


def prepare(args, work: Path) -> dict:
    """The pairs (parquet, and a held-out file), saved once for every run."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from skyrm.data import encode_pairs, read_pairs
    from skyrm.model import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    real = None if args.synthetic else next((p for p in UF_PLACES if p.is_file()), None)
    table = read_pairs(str(real)) if real else pa.Table.from_pylist(synthetic_pairs(2000, SEED))
    table = table.select(["prompt", "chosen", "rejected"])
    encoded = encode_pairs(table, tokenizer, args.max_length, "drop")
    kept = table.take(encoded.rows)
    held = min(64, len(kept) // 4)
    if len(kept) - held < args.batch_pairs * args.steps:
        raise SystemExit(f"only {len(kept)} pairs fit in {args.max_length} tokens: too few for the runs")
    pq.write_table(kept.slice(0, len(kept) - held), work / "pairs.parquet")
    pq.write_table(kept.slice(len(kept) - held), work / "held_out.parquet")
    lengths = sorted([*encoded.chosen.lengths().tolist(), *encoded.rejected.lengths().tolist()])
    return {"data": f"UltraFeedback ({UF_NAME})" if real else "synthetic, UltraFeedback's length spread",
            "pairs": len(kept), "dropped": dict(encoded.dropped),
            "lengths": [lengths[0], lengths[len(lengths) // 2], lengths[-1]], "models": {}}  # fmt: skip


def save_model(args, work: Path, name: str) -> int:
    """A random-init Llama reward model of the named shape with the byte-level tokenizer; its parameter count."""
    import torch
    from skyrm.model import tiny_config, tiny_tokenizer
    from transformers import LlamaForSequenceClassification

    tokenizer = tiny_tokenizer()
    torch.manual_seed(SEED)
    config = tiny_config(pad_token_id=tokenizer.pad_token_id, max_position_embeddings=args.max_length + 8,
                         **SHAPES[name])  # fmt: skip
    model = LlamaForSequenceClassification(config).to(torch.float32 if args.reduced else torch.bfloat16)
    model.save_pretrained(work / f"model-{name}")
    tokenizer.save_pretrained(work / f"model-{name}")
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------- one run per process


def _train_config(args, work: Path, model: str, out: str, packing: bool | None, **extra):
    from skyrm.config import load_config

    big = SHAPES.get(model, {}).get("hidden_size", 0) >= 3072  # activation checkpointing for the 3B model
    return load_config(overrides={
        "model": str(work / f"model-{model}") if model != "tiny" else "tiny", "data": str(work / "pairs.parquet"),
        "output_dir": str(work / out), "max_length": args.max_length, "truncation": "drop", "packing": packing,
        "micro_batch_tokens": args.micro_batch_tokens, "batch_pairs": args.batch_pairs, "epochs": 100.0,
        "max_steps": args.steps, "lr": 1e-5, "schedule": "constant", "warmup_ratio": 0.0, "grad_clip": 1.0,
        "dtype": "fp32" if args.reduced else "bf16", "seed": SEED, "report_to": "none",
        "checkpoint_every": 10**9, "activation_checkpointing": big, **extra,
    })  # fmt: skip


def _peak_memory() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB


def run_skyrm(args, work: Path, model: str, mode: str) -> dict:
    """``mode``: packed (a dense block mask under sdpa), flex (packed, flex attention's BlockMask), flexc (flex with
    compiled layers, ``--compile``), flexl (flex with Liger's kernels, ``--liger-kernels``) or padded."""
    from skyrm.trainer import train

    out = f"skyrm-{model}-{mode}"
    extra = ({"attn_implementation": "flex_attention", "compile": mode == "flexc", "liger_kernels": mode == "flexl"}
             if mode.startswith("flex") else {})  # fmt: skip
    train(_train_config(args, work, model, out, mode != "padded", **extra), log=lambda _: None)
    records = [json.loads(line) for line in (work / out / "metrics.jsonl").read_text().splitlines()]
    timed = records[1:] or records  # the first step allocates and compiles kernels
    seconds = sum(r["tokens"] / r["tokens_per_s"] for r in timed)
    mfu = [r["mfu"] for r in timed if r["mfu"] is not None]
    return {"tokens_per_s": sum(r["tokens"] for r in timed) / seconds, "mfu": sum(mfu) / len(mfu) if mfu else None,
            "peak_gib": _peak_memory(), "losses": [r["loss"] for r in records]}  # fmt: skip


def run_trl(args, work: Path, model: str) -> dict:
    import pyarrow.parquet as pq
    import torch
    import trl
    from skyrm.batching import step_plan
    from train import trl_in_order  # bench/train.py: the same TRL comparison on the CPU
    from transformers import TrainerCallback

    table = pq.read_table(work / "pairs.parquet")
    order = [p for step in step_plan(table.num_rows, args.batch_pairs, 100.0, SEED)[: args.steps] for p in step]
    cuda = torch.cuda.is_available()

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.times = []

        def on_step_end(self, *_, **__):
            if cuda:
                torch.cuda.synchronize()
            self.times.append(time.perf_counter())

    times = StepTimes()
    config = trl.RewardConfig(
        output_dir=str(work / f"trl-{model}"), report_to=[], use_cpu=not cuda, bf16=cuda and not args.reduced,
        max_length=args.max_length, per_device_train_batch_size=args.trl_micro_pairs,
        gradient_accumulation_steps=args.batch_pairs // args.trl_micro_pairs, max_steps=args.steps,
        learning_rate=1e-5, lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=1.0, logging_steps=1,
        save_strategy="no", seed=SEED, disable_tqdm=True, dataloader_drop_last=True,
        gradient_checkpointing=SHAPES[model]["hidden_size"] >= 3072,
    )  # fmt: skip
    trainer = trl_in_order(table.take(order), work / f"model-{model}", config, [times])
    data = trainer.train_dataset
    sizes = [len(data[i]["chosen_ids"]) + len(data[i]["rejected_ids"]) for i in range(args.steps * args.batch_pairs)]
    per_step = [sum(sizes[s * args.batch_pairs : (s + 1) * args.batch_pairs]) for s in range(args.steps)]
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    timed = list(zip(per_step[1:], [b - a for a, b in zip(times.times, times.times[1:], strict=False)], strict=False))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"tokens_per_s": sum(t for t, _ in timed) / sum(s for _, s in timed), "peak_gib": _peak_memory(),
            "losses": losses}  # fmt: skip


def load_for_scoring(folder: Path):
    """A saved reward model as skyrm.eval loads it (bf16 on the GPU, fp32 on the CPU), its tokenizer and device."""
    from skyrm.eval.runner import load_model

    model, tokenizer = load_model(str(folder))
    return model.eval(), tokenizer, next(model.parameters()).device


def run_numerics(args, work: Path) -> dict:
    """The rewards of the same pairs in padded rows, in packed rows under a dense block mask and under flex
    attention's BlockMask (the first model): in bf16, with the padded rows under eager attention too for bf16's own
    spread between two attention kernels, and in fp32 (the same weights), where all must agree to rounding."""
    import torch
    from skyrm.batching import micro_batches
    from skyrm.data import encode_pairs, read_pairs
    from skyrm.model import rewards

    name = args.models[0]
    model, tokenizer, device = load_for_scoring(work / f"model-{name}")
    data = encode_pairs(read_pairs(str(work / "held_out.parquet")), tokenizer, args.max_length, "drop")
    pairs = list(range(min(16, len(data))))
    layouts = {"padded": {"packing": False}, "eager": {"packing": False}, "packed": {"packing": True},
               "flex": {"packing": True, "block_mask": False, "flex": True}}  # fmt: skip

    def score(mode: str) -> torch.Tensor:
        model.set_attn_implementation({"flex": "flex_attention", "eager": "eager"}.get(mode, "sdpa"))
        values = []
        for batch in micro_batches(data.chosen, data.rejected, pairs, args.micro_batch_tokens,
                                   tokenizer.pad_token_id, **layouts[mode]):  # fmt: skip
            b = batch.to(device)
            values.append(rewards(model, b.input_ids, b.attention_mask, b.position_ids, b.ends).float().cpu())
        return torch.cat(values)

    def gaps() -> dict:
        with torch.no_grad():
            out = {mode: score(mode) for mode in layouts}
        gap = {mode: (out[mode] - out["padded"]).abs().max().item() for mode in layouts if mode != "padded"}
        return {**gap, "reward_scale": out["padded"].abs().mean().item()}

    result = {"model": name, "pairs": len(pairs), "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
              "max_difference": gaps()}  # fmt: skip
    if result["dtype"] != "float32":
        model.float()  # the same weights (saved in bf16), computed in fp32
        result["fp32_max_difference"] = gaps()
    return result


def hf_readout(model, sequences: list[list[int]], pad_id: int, device) -> list[float]:
    """The rewards Hugging Face's own forward gives (``logits`` of ``...ForSequenceClassification``: the last token
    that is not ``config.pad_token_id``), in right-padded batches; in the input order."""
    import torch
    from skyrm.batching import scoring_batches

    out = [0.0] * len(sequences)
    with torch.no_grad():
        for indices, batch in scoring_batches(sequences, 8192, pad_id):
            batch = batch.to(device)
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, 0]
            for i, value in zip(indices, logits.float().cpu().tolist(), strict=True):
                out[i] = value
    return out


def run_tiny(args, work: Path, where: str) -> dict:
    """The tiny model on the same pairs: bf16 on the GPU, or fp32 on the CPU (CUDA hidden by the caller)."""
    import torch
    from skyrm.data import encode_pairs, read_pairs
    from skyrm.trainer import train

    out = f"tiny-{where}"
    # fp32 weights exported: what is compared below is the readout, not bf16's rounding of the weights
    config = _train_config(args, work, "tiny", out, None, eval_data=str(work / "held_out.parquet"), max_length=1024,
                           micro_batch_tokens=8192, lr=1e-3, dtype="fp32" if where == "cpu" else "bf16",
                           batch_pairs=8, max_steps=args.tiny_steps, activation_checkpointing=False,
                           export_dtype="fp32")  # fmt: skip
    summary = train(config, log=lambda _: None)
    records = [json.loads(line) for line in (work / out / "metrics.jsonl").read_text().splitlines()]
    result = {"losses": [r["loss"] for r in records], "eval": summary.get("eval")}
    if where == "gpu":  # the exported model, as a user loads it and Hugging Face reads it, on the same pairs
        model, tokenizer, device = load_for_scoring(work / out / "model")  # the dtype training ran in
        data = encode_pairs(read_pairs(str(work / "held_out.parquet")), tokenizer, 1024, "drop")
        sequences = [s for pair in zip(data.chosen, data.rejected, strict=True) for s in pair]
        scores = torch.tensor(hf_readout(model, sequences, tokenizer.pad_token_id, device))
        chosen, rejected = scores[0::2], scores[1::2]
        result["exported"] = {"reward_mean": scores.mean().item(), "reward_std": scores.std().item(),
                              "accuracy": (chosen > rejected).float().mean().item(), "pairs": len(chosen)}  # fmt: skip
    return result


def run_eval(args, work: Path) -> dict:
    from skyrm.eval.runner import evaluate, load_benchmark

    name = args.models[0]
    model, tokenizer, device = load_for_scoring(work / f"model-{name}")
    bench = load_benchmark("sample")
    evaluate(model, tokenizer, bench, token_budget=args.micro_batch_tokens, progress=False)  # warm-up
    start = time.perf_counter()
    evaluate(model, tokenizer, bench, token_budget=args.micro_batch_tokens, progress=False)
    return {
        "model": name,
        "pairs": len(bench.prompts),
        "pairs_per_s": len(bench.prompts) / (time.perf_counter() - start),
    }


# ---------------------------------------------------------------------------------------------------- driver


def _side(args, work: Path, side: str, env: dict | None = None) -> dict:
    """Runs one part in a fresh process; its result, or its error's last lines."""
    switches = ("reduced", "synthetic", "no_trl")
    passed = [f"--{k.replace('_', '-')}={','.join(v) if isinstance(v, list) else v}" for k, v in vars(args).items()
              if k not in ("side", "work", "out", "only", *switches)]  # fmt: skip
    flags = [f"--{k.replace('_', '-')}" for k in switches if getattr(args, k)]
    command = [sys.executable, __file__, *passed, *flags, "--side", side, "--work", str(work)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})})
    result_file = work / f"{side}.json"
    if done.returncode != 0 or not result_file.exists():
        return {"error": (done.stderr or done.stdout).strip()[-2000:], "seconds": time.perf_counter() - start}
    return {**json.loads(result_file.read_text()), "seconds": time.perf_counter() - start}


def run_side(args, work: Path) -> None:
    side = args.side
    if side.startswith("skyrm-"):
        _, model, mode = side.split("-")
        result = run_skyrm(args, work, model, mode)
    elif side.startswith("trl-"):
        result = run_trl(args, work, side.removeprefix("trl-"))
    elif side == "numerics":
        result = run_numerics(args, work)
    elif side.startswith("tiny-"):
        result = run_tiny(args, work, side.removeprefix("tiny-"))
    else:
        result = run_eval(args, work)
    (work / f"{side}.json").write_text(json.dumps(result))


def report(args, info: dict, results: dict, device: str) -> list[str]:
    models = ", ".join(f"{k} {v / 1e9:.2f}B parameters" for k, v in info["models"].items())
    lines = [f"device: {device}; models: {models}",
             f"data: {info['data']}: {info['pairs']:,} pairs (dropped {info['dropped']}), "
             f"tokens per sequence min / median / max {info['lengths']}; {args.steps} steps of {args.batch_pairs} "
             f"pairs, max length {args.max_length}", "",
             f"{'run':<22} {'tokens/s':>10} {'MFU':>6} {'peak GiB':>9} {'vs TRL':>7}  first / last loss"]  # fmt: skip
    for model in args.models:
        trl_run = results.get(f"trl-{model}", {})
        for side in (*(f"skyrm-{model}-{m}" for m in ("flex", "flexc", "flexl", "packed", "padded")), f"trl-{model}"):
            r = results.get(side)
            if r is None:
                continue
            if "error" in r:
                lines.append(f"{side:<22} failed: {r['error'].splitlines()[-1] if r['error'] else '?'}")
                continue
            ratio = (f"{r['tokens_per_s'] / trl_run['tokens_per_s']:6.2f}x" if side.startswith("skyrm")
                     and "tokens_per_s" in trl_run else "")  # fmt: skip
            mfu = f"{r['mfu']:6.1%}" if r.get("mfu") is not None else "     -"
            lines.append(f"{side:<22} {r['tokens_per_s']:10,.0f} {mfu} {r['peak_gib']:9.1f} {ratio:>7}  "
                         f"{r['losses'][0]:.4f} / {r['losses'][-1]:.4f}")  # fmt: skip
    lines.append("")
    n = results.get("numerics", {})
    if "error" in n:
        lines.append(f"rewards vs padded rows: failed: {n['error'].splitlines()[-1]}")
    elif n:
        for dtype, gap in ((n["dtype"], n["max_difference"]), ("float32", n.get("fp32_max_difference"))):
            if gap:
                lines.append(f"rewards vs padded rows ({n['model']}, {n['pairs']} pairs, {dtype}), max difference: "
                             f"packed under flex attention {gap['flex']:.2e}, under a dense block mask "
                             f"{gap['packed']:.2e}; padded under eager attention {gap['eager']:.2e} "
                             f"(mean |reward| {gap['reward_scale']:.3f})")  # fmt: skip
    gpu, cpu = results.get("tiny-gpu", {}), results.get("tiny-cpu", {})
    if "losses" in gpu and "losses" in cpu:
        worst = max(abs(a - b) for a, b in zip(gpu["losses"], cpu["losses"], strict=True))
        lines.append(f"tiny model, {len(gpu['losses'])} steps, bf16 on the device vs fp32 on the CPU: loss "
                     f"{gpu['losses'][-1]:.4f} vs {cpu['losses'][-1]:.4f}, largest difference per step "
                     f"{worst:.2e}")  # fmt: skip
    elif gpu or cpu:
        error = gpu.get("error") or cpu.get("error") or "not run"
        lines.append(f"tiny model bf16 vs fp32: failed: {error.splitlines()[-1]}")
    if "exported" in gpu and gpu.get("eval"):
        e, x = gpu["eval"], gpu["exported"]
        lines.append(f"exported, read by Hugging Face, vs in-training rewards ({x['pairs']} held-out pairs): mean "
                     f"{x['reward_mean']:.4f} vs {e['reward_mean']:.4f}, std {x['reward_std']:.4f} vs "
                     f"{e['reward_std']:.4f}, accuracy {x['accuracy']:.3f} vs {e['accuracy']:.3f}")  # fmt: skip
    ev = results.get("eval", {})
    if "pairs_per_s" in ev:
        lines.append(f"evaluation ({ev['model']}, RewardBench-layout sample, {ev['pairs']} pairs): "
                     f"{ev['pairs_per_s']:.1f} pairs/s")  # fmt: skip
    elif ev:
        lines.append(f"evaluation: failed: {ev['error'].splitlines()[-1]}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reduced", action="store_true", help="tiny shapes, few steps, fp32: the CPU test")
    parser.add_argument("--synthetic", action="store_true", help="synthetic pairs even where the real data is")
    parser.add_argument("--models", default=None, help="comma-separated: 1b, 3b (default both; reduced: reduced)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per run (default 6; reduced 3)")
    parser.add_argument("--tiny-steps", type=int, default=None, help="steps of the bf16-vs-fp32 run (default 20)")
    parser.add_argument("--batch-pairs", type=int, default=None, help="pairs per step (default 32; reduced 4)")
    parser.add_argument("--trl-micro-pairs", type=int, default=None, help="TRL pairs per forward (default 4)")
    parser.add_argument("--max-length", type=int, default=None, help="tokens per sequence (default 4096)")
    parser.add_argument("--micro-batch-tokens", type=int, default=None, help="skyrm tokens per forward (16384)")
    parser.add_argument("--trl-models", default=None, help="the models TRL runs too (default: the first)")
    parser.add_argument("--no-trl", action="store_true", help="leave TRL out")
    parser.add_argument("--only", help="comma-separated parts to run, e.g. numerics,skyrm-3b-flex (default all)")
    parser.add_argument("--out", help="also write the results as JSON here")
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    defaults = ({"models": "reduced", "steps": 3, "tiny_steps": 4, "batch_pairs": 4, "trl_micro_pairs": 2,
                 "max_length": 512, "micro_batch_tokens": 2048} if args.reduced else
                {"models": "1b,3b", "steps": 6, "tiny_steps": 20, "batch_pairs": 32, "trl_micro_pairs": 4,
                 "max_length": 4096, "micro_batch_tokens": 16_384})  # fmt: skip
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.models = args.models.split(",") if isinstance(args.models, str) else args.models
    args.trl_models = args.trl_models.split(",") if isinstance(args.trl_models, str) else [args.models[0]]
    args.only = args.only.split(",") if isinstance(args.only, str) else args.only
    if args.side:
        run_side(args, Path(args.work))
        return 0

    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (no GPU: the reduced check)"
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="skyrm-gpu-check-"))
    try:
        info = prepare(args, work)
        print(f"data prepared in {time.perf_counter() - started:.0f} s", flush=True)
        results = {}
        try:
            import trl  # noqa: F401

            trl_models = [] if args.no_trl else args.trl_models
        except ImportError as e:
            trl_models = []
            print(f"TRL left out: {e}", flush=True)
        # the most telling parts first, the slowest (3B) last: a run cut short still reports what it finished
        # packed rows: flex attention on a GPU (compiled layers too, first model); a dense block mask only where
        # flex cannot train (CPUs): on an H200 it ran at a fifth of flex's tokens/s (docs/benchmarks.md)
        cuda = torch.cuda.is_available()
        try:  # Liger's fused kernels (RMSNorm, SwiGLU, RoPE) on the first model, when the package is there
            import liger_kernel  # noqa: F401

            liger = ["flexl"]
        except ImportError:
            liger = []
            print("Liger left out: the liger_kernel package is not installed", flush=True)
        plan = []
        for i, model in enumerate(args.models):
            packed = (["flex", "flexc", *liger] if i == 0 else ["flex"]) if cuda else (["packed"] if i == 0 else [])
            plan += [("model", model), *(f"skyrm-{model}-{mode}" for mode in [*packed, "padded"]),
                     *([f"trl-{model}"] if model in trl_models else [])]  # fmt: skip
            if i == 0:  # numerics and evaluation on the first model only
                plan += ["numerics", "tiny-gpu", "tiny-cpu", "eval"]
        if args.only:  # the parts named, and the models they use
            wanted = set(args.only)
            needs = {args.models[0]} if wanted & {"numerics", "eval"} else set()
            needs |= {side.split("-")[1] for side in wanted if side.startswith(("skyrm-", "trl-"))}
            plan = [side for side in plan if (side[1] in needs if isinstance(side, tuple) else side in wanted)]
        for side in plan:
            if isinstance(side, tuple):
                info["models"][side[1]] = save_model(args, work, side[1])
                print(f"model {side[1]}: {info['models'][side[1]]:,} parameters", flush=True)
                continue
            env = {"CUDA_VISIBLE_DEVICES": ""} if side == "tiny-cpu" else None
            results[side] = _side(args, work, side, env)
            print(f"{side}: {results[side].get('seconds', 0):.0f} s", flush=True)
            lines = report(args, info, results, device)
            if args.out:  # after every part, so that a run cut short leaves its results
                Path(args.out).write_text(json.dumps({"device": device, "info": info, "results": results,
                                                      "table": lines}, indent=2) + "\n")  # fmt: skip
        print("\n" + "\n".join(lines) + f"\n\ntotal {time.perf_counter() - started:.0f} s")
        failed = [side for side, r in results.items() if "error" in r]
        for side in failed:
            print(f"\n--- {side} failed:\n{results[side]['error']}", file=sys.stderr)
        return 1 if failed else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
