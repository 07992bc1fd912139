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
3. numerics: the rewards of packed rows (flex attention, a dense block mask; on a GPU in bf16 also PyTorch's varlen
   kernel, ``torch_varlen``) and padded rows (sdpa, eager) of the same pairs, max difference, in bf16 and in fp32 with
   the same weights; the loss curve of the tiny model trained in bf16 on the GPU (under torch_varlen, compiled)
   against fp32 on the CPU; the exported model's held-out rewards as Hugging Face's own forward reads them (the last
   token that is not the pad, as the official RewardBench runner, TRL and vLLM do) against the ones measured in
   training (mean, std and accuracy).
4. evaluation throughput (pairs/s) of the 1B model on the synthetic RewardBench-layout sample.
5. issue 21's parts, run only when ``--only`` names them (bench/gpu_tuning.py): ``profile-M``, a torch.profiler trace
   of the compiled flex run (``profile-M-MODE``: of MODE's) summed by kind of work, and that run with one setting
   changed at a time (``--variants``); ``memory-M``, the memory plan of M's shape (bench/gpu_memory.py) and a measured
   run of it; ``skyrm-M-MODE``, one run of any mode (:func:`mode_settings`), e.g. ``skyrm-3b-flexc+ac0``. Every run's
   peak is set against its plan, and its per-GPU speed on 8 GPUs estimated. ``--budget-s`` starts no part that its
   planning figure says would not end in time.

Data: real UltraFeedback pairs from ../shared/data or the copy carried in bench/wheels/ (byte-level tokens, pairs
over the max length dropped: lengths as they come), else synthetic pairs whose prompt and answer lengths follow the
same spread (quantiles measured on that file). ``--reduced`` runs everything with tiny shapes and few steps on the
CPU in fp32: the test suite does that (tests/skyrm/test_gpu_check.py).

Run: python bench/gpu_check.py [--reduced] [--models 1b,3b] [--steps 6] [--batch-pairs 32] [--out FILE.json]
                              [--only PART,...] [--variants pm4096,nrs,b256,mbt32768,liger] [--budget-s 540]
"""

from __future__ import annotations

import sys

sys.path.append(sys.path.pop(0))  # bench/select.py shadows the standard library's select module

import argparse
import importlib.util
import json
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from unittest import mock

import gpu_memory
import gpu_profile
import gpu_tuning

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
    # Llama-3.1-8B's shape (its long-context RoPE scaling left out: the same work at 4,096 tokens)
    "8b": {"hidden_size": 4096, "intermediate_size": 14_336, "num_hidden_layers": 32, "num_attention_heads": 32,
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
        words, length = [], 0
        while length < chars:
            words.append(rng.choice(_WORDS))
            length += len(words[-1]) + 1
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
    """A random-init Llama reward model of the named shape with the byte-level tokenizer; its parameter count.
    Initialised on the GPU when there is one (the 8B model's 7.5B random numbers take a minute on a CPU)."""
    import torch
    from skyrm.model import tiny_config, tiny_tokenizer
    from transformers import LlamaForSequenceClassification

    tokenizer = tiny_tokenizer()
    torch.manual_seed(SEED)
    config = tiny_config(pad_token_id=tokenizer.pad_token_id, max_position_embeddings=args.max_length + 8,
                         **SHAPES[name])  # fmt: skip
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForSequenceClassification(config).to(torch.float32 if args.reduced else torch.bfloat16)
    model.save_pretrained(work / f"model-{name}")
    tokenizer.save_pretrained(work / f"model-{name}")
    count = sum(p.numel() for p in model.parameters())
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the runs, in their own processes, get the whole GPU
    return count


# ------------------------------------------------------------------------------------------- one run per process


def _train_config(args, work: Path, model: str, out: str, packing: bool | None, **extra):
    """The run's config; no checkpoints (a 1B model's are 15 GB, the 8B model's more than the GPU machine's disk)."""
    from skyrm.config import load_config

    big = SHAPES.get(model, {}).get("hidden_size", 0) >= 3072  # activation checkpointing for the 3B model
    return load_config(overrides={
        "model": str(work / f"model-{model}") if model != "tiny" else "tiny", "data": str(work / "pairs.parquet"),
        "output_dir": str(work / out), "max_length": args.max_length, "truncation": "drop", "packing": packing,
        "micro_batch_tokens": args.micro_batch_tokens, "batch_pairs": args.batch_pairs, "epochs": 100.0,
        "max_steps": args.steps, "lr": 1e-5, "schedule": "constant", "warmup_ratio": 0.0, "grad_clip": 1.0,
        "dtype": "fp32" if args.reduced else "bf16", "seed": SEED, "report_to": "none",
        "checkpoint_every": 0, "activation_checkpointing": big, **extra,
    })  # fmt: skip


def _peak_memory() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB


#: the packed or padded layouts of a run's ``mode`` (``BASE[+OPTION...]``), as training settings
BASES = {"packed": {}, "padded": {"packing": False}, "flex": {"attn_implementation": "flex_attention"},
         "flexc": {"attn_implementation": "flex_attention", "compile": True},
         "flexl": {"attn_implementation": "flex_attention", "liger_kernels": True},
         "flexcl": {"attn_implementation": "flex_attention", "compile": True, "liger_kernels": True}}  # fmt: skip
OPTIONS = {"nrs": {"reshard_after_forward": False}, "fused": {"fused_optimizer": True},
           "ac0": {"activation_checkpointing": False}, "ac1": {"activation_checkpointing": True},
           "va": {"attn_implementation": "torch_varlen"}, "liger": {"liger_kernels": True}}  # fmt: skip


def mode_settings(mode: str) -> dict:
    """The settings of a run's ``mode``: a base, packed (a dense block mask under sdpa), padded, flex (packed
    under flex attention's BlockMask), flexc (flex with compiled layers, ``--compile``), flexl (flex with Liger's
    kernels, ``--liger-kernels``) or flexcl (both), then options joined by ``+``: nrs
    (``--no-reshard-after-forward``), fused (``--fused-optimizer``), ac0 / ac1 (activation checkpointing off / on),
    mbtN (``--micro-batch-tokens N``), bN (``--flex-block-size N``), pmN (``--pad-to-multiple-of N``), va
    (``--attn-implementation torch_varlen``: PyTorch's varlen kernel in place of flex attention, rows as long as
    their sequences, or with pmN in fixed shapes), liger (``--liger-kernels``). E.g. ``flexc+nrs+mbt32768``,
    ``flexc+va``."""
    base, *options = mode.split("+")
    if base not in BASES:
        raise ValueError(f"{mode}: the base must be one of {', '.join(BASES)}")
    settings = {"packing": True, **BASES[base]}
    for option in options:
        if option in OPTIONS:
            settings |= OPTIONS[option]
        elif option.startswith("mbt") and option[3:].isdigit():
            settings["micro_batch_tokens"] = int(option[3:])
        elif option.startswith("b") and option[1:].isdigit():
            settings["flex_block_size"] = int(option[1:])
        elif option.startswith("pm") and option[2:].isdigit():
            settings["pad_to_multiple_of"] = int(option[2:])
        else:
            raise ValueError(f"{mode}: unknown option {option!r} (nrs, fused, ac0, ac1, va, liger, mbtN, bN, pmN)")
    return settings


#: a timed step under this share of the steps' median tokens/s compiled something (6-9 s against 1.5 s on an H200)
STEADY = 0.85


def run_skyrm(args, work: Path, model: str, mode: str, **extra) -> dict:
    """One training run of ``model`` in ``mode`` (:func:`mode_settings`; ``extra``: more settings): tokens/s and MFU
    of the steps after the first (which allocates and compiles) and before a trace's, and of those of them that
    compiled nothing (``steady_``), the peak memory, the losses. The model is not exported (:func:`_no_export`); the
    run's folder is removed after."""
    from skyrm.trainer import train
    from torch._dynamo.utils import counters

    out = f"skyrm-{model}-{mode}"
    config = _train_config(args, work, model, out, **(mode_settings(mode) | extra))
    graphs = counters["stats"]["unique_graphs"]
    with mock.patch("skyrm.trainer.export_model", _no_export):
        train(config, log=lambda _: None)
    records = [json.loads(line) for line in (work / out / "metrics.jsonl").read_text().splitlines()]
    traced = config.profile_steps + 1 if config.profile_steps else 0  # the traced steps and the profiler's warm-up
    timed = records[1 : len(records) - traced] or records
    seconds = sum(r["tokens"] / r["tokens_per_s"] for r in timed)
    # the steps that compiled nothing: one that compiles a new row length runs at a fraction of the others' rate
    typical = statistics.median(r["tokens_per_s"] for r in timed)
    steady = [r for r in timed if r["tokens_per_s"] >= STEADY * typical]
    mfu = [r["mfu"] for r in timed if r["mfu"] is not None]
    # over the steady steps' time: their FLOPs (mfu x peak x seconds) over their seconds
    steady_mfu = (sum(r["mfu"] * r["tokens"] / r["tokens_per_s"] for r in steady)
                  / sum(r["tokens"] / r["tokens_per_s"] for r in steady)) if mfu else None  # fmt: skip
    result = {"tokens_per_s": sum(r["tokens"] for r in timed) / seconds, "mfu": sum(mfu) / len(mfu) if mfu else None,
              "peak_gib": _peak_memory(), "losses": [r["loss"] for r in records], "timed_steps": len(timed),
              "micro_batch_tokens": config.micro_batch_tokens,
              "activation_checkpointing": config.activation_checkpointing,
              "fused_optimizer": config.fused_optimizer, "reshard_after_forward": config.reshard_after_forward,
              "packing": packing_fill(config, len(records)) if config.packing else None,
              "step_tokens_per_s": [round(r["tokens_per_s"]) for r in records],
              "steady_tokens_per_s": sum(r["tokens"] for r in steady) / sum(r["tokens"] / r["tokens_per_s"]
                                                                            for r in steady),
              "steady_steps": len(steady), "steady_mfu": steady_mfu,
              "graphs_compiled": counters["stats"]["unique_graphs"] - graphs}  # fmt: skip
    if config.profile_steps:
        result["profile"] = gpu_profile.summarise(gpu_profile.load(work / out / "profile" / "trace-rank0.json.gz"))
        shutil.copy(work / out / "profile" / "trace-rank0.json.gz", work / f"{out}-trace.json.gz")
    shutil.rmtree(work / out, ignore_errors=True)
    return result


def _no_export(model, tokenizer, folder: Path, *_) -> None:
    """skyrm.export.export_model's stand-in in the measured runs: an empty model folder. They measure training; the
    export (gathering and writing 15 GB for the 8B model, a minute of the device time) is checked by ``tiny-gpu``."""
    folder.mkdir()


def packing_fill(config, steps: int) -> dict:
    """How full the packed rows of a run's steps were: micro-batches a step and real tokens over row tokens (the
    padding at the end of each row, to ``micro_batch_tokens`` or to a multiple of ``pad_to_multiple_of``, is
    computed and thrown away)."""
    from skyrm.batching import micro_batches, step_plan
    from skyrm.data import encode_pairs, read_pairs
    from skyrm.model import tiny_tokenizer
    from skyrm.trainer import VARLEN_ATTENTION

    tokenizer = tiny_tokenizer()
    data = encode_pairs(read_pairs(config.data), tokenizer, config.max_length, "drop")
    plan = step_plan(len(data), config.batch_pairs, config.epochs, config.seed, config.max_steps)[:steps]
    # the rows' lengths as training makes them, without a dense block mask's memory: every row micro_batch_tokens
    # long under a dense mask, and under flex attention unless pad_to_multiple_of; a varlen kernel's as long as their
    # sequences unless pad_to_multiple_of (then in fixed shapes, their count of sequences as these pairs give it)
    flex = 0 if config.attn_implementation in VARLEN_ATTENTION else config.flex_block_size
    rows = [micro_batches(data.chosen, data.rejected, step, config.micro_batch_tokens, tokenizer.pad_token_id,
                          block_mask=False, by_length=True, flex=flex, row_multiple=config.pad_to_multiple_of)
            for step in plan]  # fmt: skip
    tokens = sum(b.tokens for batches in rows for b in batches)
    return {
        "micro_batches_per_step": sum(len(batches) for batches in rows) / len(rows),
        "fill": tokens / sum(b.input_ids.numel() for batches in rows for b in batches),
    }


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
    """The rewards of the same pairs in padded rows, in packed rows under a dense block mask, under flex
    attention's BlockMask and (bf16 on a GPU) under PyTorch's varlen kernel (the first model): in bf16, with the
    padded rows under eager attention too for bf16's own spread between two attention kernels, and in fp32 (the
    same weights), where all must agree to rounding."""
    import torch
    from skyrm.batching import in_pair_order, micro_batches
    from skyrm.data import encode_pairs, read_pairs
    from skyrm.model import attention_implementation, rewards
    from skyrm.varlen import TORCH_VARLEN

    name = args.models[0]
    model, tokenizer, device = load_for_scoring(work / f"model-{name}")
    data = encode_pairs(read_pairs(str(work / "held_out.parquet")), tokenizer, args.max_length, "drop")
    pairs = list(range(min(16, len(data))))
    layouts = {"padded": {"packing": False}, "eager": {"packing": False}, "packed": {"packing": True},
               "flex": {"packing": True, "block_mask": False, "flex": 128}}  # fmt: skip
    implementations = {"flex": "flex_attention", "eager": "eager"}
    if device.type == "cuda" and importlib.util.find_spec("torch.nn.attention.varlen"):  # torch >= 2.10; bf16 only
        layouts["varlen"] = {"packing": True, "block_mask": False}
        layouts["varlen_fixed"] = {"packing": True, "block_mask": False, "row_multiple": 4096}  # fixed shapes
        implementations["varlen"] = implementations["varlen_fixed"] = attention_implementation("llama", TORCH_VARLEN)

    def score(mode: str) -> torch.Tensor:
        model.set_attn_implementation(implementations.get(mode, "sdpa"))
        values = []
        batches = micro_batches(data.chosen, data.rejected, pairs, args.micro_batch_tokens, tokenizer.pad_token_id,
                                **layouts[mode])  # fmt: skip
        for batch in batches:
            b = batch.to(device)
            scored = rewards(model, b.input_ids, b.attention_mask, b.position_ids, b.ends, b.varlen)
            values.append(scored.float().cpu())
        return in_pair_order(batches, values, pairs)

    def gaps() -> dict:
        with torch.no_grad():
            bf16 = next(model.parameters()).dtype == torch.bfloat16
            out = {mode: score(mode) for mode in layouts if not mode.startswith("varlen") or bf16}
        gap = {mode: (out[mode] - out["padded"]).abs().max().item() for mode in out if mode != "padded"}
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
    """The tiny model on the same pairs: bf16 on the GPU (packed rows under PyTorch's varlen kernel, compiled
    layers, where this torch has the kernel), or fp32 on the CPU (padded rows; CUDA hidden by the caller)."""
    import torch
    from skyrm.data import encode_pairs, read_pairs
    from skyrm.trainer import train

    out = f"tiny-{where}"
    fastest = {"attn_implementation": "torch_varlen", "compile": True}
    varlen = torch.cuda.is_available() and importlib.util.find_spec("torch.nn.attention.varlen") is not None
    speed = fastest if where == "gpu" and varlen else {}
    # fp32 weights exported: what is compared below is the readout, not bf16's rounding of the weights
    config = _train_config(args, work, "tiny", out, None, eval_data=str(work / "held_out.parquet"), max_length=1024,
                           micro_batch_tokens=8192, lr=1e-3, dtype="fp32" if where == "cpu" else "bf16",
                           batch_pairs=8, max_steps=args.tiny_steps, activation_checkpointing=False,
                           export_dtype="fp32", **speed)  # fmt: skip
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


def _side(args, work: Path, side: str, env: dict | None = None, timeout: float | None = None,
          deadline: float | None = None) -> dict:  # fmt: skip
    """Runs one part in a fresh process (killed after ``timeout`` seconds; ``deadline``: the wall-clock time by which
    a part of several runs starts no more); its result, or its error's last lines with what it had written."""
    switches = ("reduced", "synthetic", "no_trl")
    kept = ("side", "work", "out", "only", "budget_s", "deadline", *switches)  # passed otherwise, or not at all
    passed = [f"--{k.replace('_', '-')}={','.join(v) if isinstance(v, list) else v}" for k, v in vars(args).items()
              if k not in kept and v is not None]  # fmt: skip
    flags = [f"--{k.replace('_', '-')}" for k in switches if getattr(args, k)]
    command = [sys.executable, __file__, *passed, *flags, "--side", side, "--work", str(work)]
    command += [f"--deadline={deadline}"] if deadline else []
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})},
                              timeout=timeout)  # fmt: skip
        error = None if done.returncode == 0 else (done.stderr or done.stdout).strip()[-2000:]
    except subprocess.TimeoutExpired:
        error = f"cut at the time budget, after {timeout:.0f} s"
    result_file = work / f"{side}.json"
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    if error is not None or not result:
        result["error"] = error or "no result written"
    return {**result, "seconds": time.perf_counter() - start}


def _check_part(args, side: str) -> None:
    """Refuses a part ``--only`` names that the check does not have (before any work)."""
    kind, model = side.split("-")[0], model_of(args, side)
    mode = side.split("-", 2)[2:]  # skyrm-M-MODE, profile-M[-MODE]
    known = side in ("numerics", "eval", "tiny-gpu", "tiny-cpu") or (
        model in SHAPES and kind not in ("skyrm", "profile")
    )
    try:
        known |= kind == "skyrm" and model in SHAPES and bool(mode_settings(mode[0]))
        known |= kind == "profile" and model in SHAPES and (not mode or bool(mode_settings(mode[0])))
    except (ValueError, IndexError) as e:
        raise SystemExit(f"--only {side}: {e}") from None
    if not known:
        raise SystemExit(f"--only {side}: no such part (models: {', '.join(SHAPES)}; see --help)")


def model_of(args, side: str) -> str | None:
    """The model a part trains or scores."""
    if side in ("numerics", "eval"):
        return args.models[0]
    return side.split("-")[1] if side.split("-")[0] in ("skyrm", "trl", "profile", "memory") else None


def run_side(args, work: Path) -> None:
    side = args.side
    kind = side.split("-")[0]
    if kind == "profile":
        save = (work / f"{side}.json").write_text
        base = side.split("-", 2)[2] if side.count("-") > 1 else None
        result = gpu_tuning.run_profile(args, run_skyrm, work, model_of(args, side), lambda r: save(json.dumps(r)),
                                        base)  # fmt: skip
    elif kind == "memory":
        result = gpu_tuning.run_memory(args, run_skyrm, work, model_of(args, side))
    elif side.startswith("skyrm-"):
        _, model, mode = side.split("-", 2)
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
                varlen = (f", under torch_varlen {gap['varlen']:.2e} (in fixed shapes {gap['varlen_fixed']:.2e})"
                          if "varlen" in gap else "")  # fmt: skip
                lines.append(f"rewards vs padded rows ({n['model']}, {n['pairs']} pairs, {dtype}), max difference: "
                             f"packed under flex attention {gap['flex']:.2e}, under a dense block mask "
                             f"{gap['packed']:.2e}{varlen}; padded under eager attention {gap['eager']:.2e} "
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


def _plan(args, cuda: bool) -> list[str]:
    """The parts to run, in order: the check's, or those ``--only`` names (refused before any work if unknown)."""
    try:
        import trl  # noqa: F401

        trl_models = [] if args.no_trl else args.trl_models
    except ImportError as e:
        trl_models = []
        print(f"TRL left out: {e}", flush=True)
    # the most telling parts first, the slowest (3B) last: a run cut short still reports what it finished
    # packed rows: flex attention on a GPU (compiled layers too, first model); a dense block mask only where
    # flex cannot train (CPUs): on an H200 it ran at a fifth of flex's tokens/s (docs/benchmarks.md)
    try:  # Liger's fused kernels (RMSNorm, SwiGLU, RoPE) on the first model, when the package is there
        import liger_kernel  # noqa: F401

        liger = ["flexl"]
    except ImportError:
        liger = []
        print("Liger left out: the liger_kernel package is not installed", flush=True)
    plan = []
    for i, model in enumerate(args.models):
        packed = (["flex", "flexc", *liger] if i == 0 else ["flex"]) if cuda else (["packed"] if i == 0 else [])
        plan += [*(f"skyrm-{model}-{mode}" for mode in [*packed, "padded"]),
                 *([f"trl-{model}"] if model in trl_models else [])]  # fmt: skip
        if i == 0:  # numerics and evaluation on the first model only
            plan += ["numerics", "tiny-gpu", "tiny-cpu", "eval"]
    if args.only:  # the check's parts named, in its order, then others (issue 21's) in the order named
        plan = [side for side in plan if side in args.only] + [side for side in args.only if side not in plan]
        for side in plan:
            _check_part(args, side)
    return plan


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
    parser.add_argument(
        "--only",
        help="comma-separated parts to run, e.g. numerics,skyrm-3b-flex (default all); "
        "also issue 21's parts (bench/gpu_tuning.py): profile-M, memory-M, skyrm-M-MODE",
    )
    parser.add_argument(
        "--variants",
        default=None,
        help=f"what profile-M changes, comma-separated (default {','.join(gpu_tuning.VARIANTS)}; reduced: nrs,fused)",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        help="start no part that would end past this many seconds "
        "(bench/gpu_tuning.py's planning figures); cut the one running at it",
    )
    parser.add_argument("--out", help="also write the results as JSON here")
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    defaults = ({"models": "reduced", "steps": 3, "tiny_steps": 4, "batch_pairs": 4, "trl_micro_pairs": 2,
                 "max_length": 512, "micro_batch_tokens": 2048, "variants": "nrs,fused"} if args.reduced else
                {"models": "1b,3b", "steps": 6, "tiny_steps": 20, "batch_pairs": 32, "trl_micro_pairs": 4,
                 "max_length": 4096, "micro_batch_tokens": 16_384,
                 "variants": ",".join(gpu_tuning.VARIANTS)})  # fmt: skip
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.models = args.models.split(",") if isinstance(args.models, str) else args.models
    args.trl_models = args.trl_models.split(",") if isinstance(args.trl_models, str) else [args.models[0]]
    args.only = args.only.split(",") if isinstance(args.only, str) else args.only
    args.variants = args.variants.split(",") if isinstance(args.variants, str) else args.variants
    if args.side:
        run_side(args, Path(args.work))
        return 0

    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (no GPU: the reduced check)"
    started = time.perf_counter()
    plan = _plan(args, torch.cuda.is_available())
    work = Path(tempfile.mkdtemp(prefix="skyrm-gpu-check-"))
    try:
        info = prepare(args, work)
        print(f"data prepared in {time.perf_counter() - started:.0f} s", flush=True)
        results = {}
        capacity = (
            torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available() else gpu_memory.H200_BYTES
        )
        skipped: dict[str, str] = {}
        lines: list[str] = []
        for index, side in enumerate(plan):
            left = args.budget_s - (time.perf_counter() - started) if args.budget_s else None
            need = gpu_tuning.estimate(side, len(args.variants))[0]
            if left is not None and left < need:
                skipped[side] = f"{left:.0f} s of the budget left, the part takes about {need} s"
                print(f"{side}: skipped ({skipped[side]})", flush=True)
            else:
                model = model_of(args, side)
                if model and model not in info["models"]:
                    info["models"][model] = save_model(args, work, model)
                    print(f"model {model}: {info['models'][model]:,} parameters", flush=True)
                env = {"CUDA_VISIBLE_DEVICES": ""} if side == "tiny-cpu" else None
                if left is not None:  # what the model's save left
                    left = max(1.0, args.budget_s - (time.perf_counter() - started))
                later = sum(gpu_tuning.estimate(s, len(args.variants))[1] for s in plan[index + 1 :])
                deadline = time.time() + left - later if left is not None else None
                results[side] = _side(args, work, side, env, timeout=left, deadline=deadline)
                print(f"{side}: {results[side].get('seconds', 0):.0f} s", flush=True)
                trace = gpu_tuning.copy_trace(work, args.out, side)
                if trace:
                    results[side]["trace_file"] = trace
                for name in set(info["models"]) - {model_of(args, s) for s in plan[index + 1 :]}:
                    shutil.rmtree(work / f"model-{name}", ignore_errors=True)  # the disk: 15 GB for the 8B model
            lines = report(args, info, results, device) + gpu_tuning.report(args, plan, results, SHAPES, capacity)
            lines += [f"{side}: not run ({reason})" for side, reason in skipped.items()]
            if args.out:  # after every part, so that a run cut short leaves its results
                found = {"device": device, "info": info, "results": results, "skipped": skipped, "table": lines}
                Path(args.out).write_text(json.dumps(found, indent=2) + "\n")
        print("\n" + "\n".join(lines) + f"\n\ntotal {time.perf_counter() - started:.0f} s")
        failed = [side for side, r in results.items() if "error" in r]
        for side in failed:
            print(f"\n--- {side} failed:\n{results[side]['error']}", file=sys.stderr)
        return 1 if failed else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
