"""Issue 21's GPU runs, parts of bench/gpu_check.py that run only when ``--only`` names them (M: a model of
gpu_check.SHAPES, 1b, 3b, 8b, or reduced on the CPU):

* ``profile-M``: the control, M packed under flex attention with compiled layers (the run of 40.1% MFU in
  docs/benchmarks.md), or ``profile-M-MODE``, any mode (gpu_check.mode_settings) as the control: ``--steps`` untraced
  steps (the first left out of the rates), then one that warms the profiler up and two traced (``skyrm train
  --profile-steps 2``); the trace summed by kind of work (bench/gpu_profile.py) and its file copied beside ``--out``.
  Then, in the same process (a fresh one per run would pay a minute of start, load and compile each; the torch.compile
  caches are reset between runs), the control with one setting changed at a time (``--variants``, ``none`` for none:
  mbtN, micro-batches of N tokens; pmN, rows padded to a multiple of N tokens; nrs, no resharding after the forward;
  va, PyTorch's varlen kernel in place of flex attention; fused, the fused AdamW; bN, flex attention's block size
  (skipped under a va control); liger, Liger's kernels added to the control, last as it patches Hugging Face's Llama
  classes for the process), then the changes that made it more than 1% faster together. Variants are not started past
  the part's deadline (what ``--budget-s`` leaves after the later parts);
* ``memory-M``: the memory plan of M's shape (bench/gpu_memory.py) and a measured run of it, flex attention,
  activation checkpointing and the fused AdamW, 16,384 tokens a micro-batch, 16 pairs a step, 3 steps;
* any ``skyrm-M-MODE`` (gpu_check.mode_settings), e.g. ``skyrm-3b-flexc+ac0``: M compiled without activation
  checkpointing.

The report adds, for every measured run, its planned peak memory (the eager plan: compiled layers keep less) and its
per-GPU tokens/s and MFU estimated for 8 GPUs (gpu_memory.eight_gpus).
"""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path

import gpu_memory
import gpu_profile

#: the changes ``profile-M`` tries by default on a GPU, most telling first (the fused AdamW is left to the profile's
#: optimizer share: at most that); on a CPU only what --variants names
VARIANTS = ("pm4096", "nrs", "b256", "mbt32768", "liger")
#: planning figures, seconds on an H200, the model's save included (docs/benchmarks.md's runs 5 and 6, without the
#: export: a 1B run in a fresh process 40-64 s, the 3B 53 s and the 8B 57 s, their saves 3, 6 and 15 s; the 1B
#: control traced and five variants in one process 164 s)
SECONDS = {"profile": 70, "variant": 25, "skyrm": 65, "memory": 80}


def estimate(side: str, variants: int) -> tuple[int, int]:
    """The planning figures of a part, seconds: the least it needs to be worth starting, and all of it (0 for the
    parts of issue 8's check, which have no figures)."""
    kind = side.split("-")[0]
    if kind == "profile":
        return SECONDS["profile"], SECONDS["profile"] + SECONDS["variant"] * variants
    need = SECONDS.get(kind, 0) if "+" in side or kind == "memory" else 0
    return need, need


def _fresh() -> None:
    """Between two runs in one process: the last model's memory back, compiled code and peak statistics reset."""
    import gc

    import torch

    gc.collect()
    torch._dynamo.reset()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def run_profile(args, run, work: Path, model: str, save, base: str | None = None) -> dict:
    """``base``: the control's mode (``profile-M-MODE``; by default flexc, on a CPU packed). ``save(result)`` after
    every run, so that a part cut short keeps what it measured."""
    import torch

    cuda = torch.cuda.is_available()
    base = base or ("flexc" if cuda else "packed")  # the CPU has no flex backward
    result = {"base": base, **run(args, work, model, base, profile_steps=2, max_steps=args.steps + 3)}
    found: dict = {}

    def one(mode: str) -> None:
        if args.deadline and time.time() + SECONDS["variant"] > args.deadline:
            found[mode] = {"skipped": "not started: the time budget left is less than a run takes"}
        else:
            _fresh()
            try:
                found[mode] = run(args, work, model, mode)
            except Exception as e:  # one failing setting (a block size the kernel refuses) leaves the others
                found[mode] = {"error": f"{type(e).__name__}: {e}"[-2000:]}
        save({**result, "variants": found})

    save(result)
    tried = [v for v in args.variants if v not in ("liger", "none")]
    varlen = "va" in base.split("+")
    for option in tried:
        if varlen and re.fullmatch(r"b\d+", option):  # flex attention's block size: not the varlen kernel's
            found[f"{base}+{option}"] = {"skipped": "flex attention's block size, not the varlen kernel's"}
        else:
            one(f"{base}+{option}")
    control = result["tokens_per_s"]
    faster = [v for v in tried if found[f"{base}+{v}"].get("tokens_per_s", 0) > 1.01 * control]
    if len(faster) > 1:
        one("+".join([base, *faster]))
    if "liger" in args.variants:
        if not cuda:
            found[f"{base}+liger"] = {"skipped": "Liger's kernels need a GPU"}
        elif importlib.util.find_spec("liger_kernel") is None:
            found[f"{base}+liger"] = {"skipped": "the liger_kernel package is not installed (carry bench/wheels)"}
        else:
            one(f"{base}+liger")
    return {**result, "variants": found}


def run_memory(args, run, work: Path, model: str) -> dict:
    import torch

    if torch.cuda.is_available():
        return run(args, work, model, "flex+ac1+fused+mbt16384", batch_pairs=16, max_steps=3)
    return run(args, work, model, "packed+ac1+fused", max_steps=3)


# ------------------------------------------------------------------------------------------------------ report


def _planned(shape: dict, r: dict) -> float:
    return gpu_memory.plan(shape, 1, r["micro_batch_tokens"], r["activation_checkpointing"], r["fused_optimizer"],
                           r["reshard_after_forward"])["peak"] / gpu_memory.GIB  # fmt: skip


def _row(name: str, r: dict, shape: dict, control: dict | None = None) -> str:
    if "tokens_per_s" not in r:
        reason = r.get("skipped") or (r.get("error") or "?").strip().splitlines()[-1]
        return f"{name:<34} {'skipped' if 'skipped' in r else 'failed'}: {reason}"
    mfu = f"{r['mfu']:6.1%}" if r.get("mfu") is not None else "     -"
    compared = control and "tokens_per_s" in control
    ratio = f"{r['tokens_per_s'] / control['tokens_per_s']:6.3f}x" if compared else ""
    fill = f"{r['packing']['fill']:5.1%}" if r.get("packing") else "    -"
    steady, steps = r.get("steady_tokens_per_s", r["tokens_per_s"]), r.get("steady_steps", r.get("timed_steps", 0))
    steady_ratio = f"{steady / control.get('steady_tokens_per_s', control['tokens_per_s']):6.3f}x" if compared else ""
    steady_mfu = f"{r['steady_mfu']:6.1%}" if r.get("steady_mfu") is not None else "     -"
    return (f"{name:<34} {r['tokens_per_s']:10,.0f} {mfu} {r['peak_gib']:9.1f} {_planned(shape, r):8.1f} {fill:>6} "
            f"{ratio:>7} {steady:10,.0f} {steady_mfu} {steps:>5} {steady_ratio:>7}")  # fmt: skip


#: steady: the tokens/s and MFU (over their time) of the timed steps that compiled nothing (gpu_check.run_skyrm), and
#: how many they were
HEADER = (f"{'run':<34} {'tokens/s':>10} {'MFU':>6} {'peak GiB':>9} {'planned':>8} {'fill':>6} {'vs ctrl':>7} "
          f"{'steady':>10} {'MFU':>6} {'steps':>5} {'vs ctrl':>7}")  # fmt: skip


def report(args, plan: list[str], results: dict, shapes: dict, capacity: float) -> list[str]:
    """The lines of issue 21's parts in ``plan``: the control and its variants with the control's trace, the memory
    plan (also when its run was not), the measured runs against their plan, and the 8-GPU estimate. ``planned``: the
    eager plan's peak (gpu_memory.plan); ``fill``: real tokens over the packed rows' tokens."""
    lines: list[str] = []
    measured: dict[str, tuple[str, dict]] = {}  # name -> (model, result)
    for side in plan:
        kind, r = side.split("-")[0], results.get(side)
        if kind not in ("profile", "memory", "skyrm") or (kind == "skyrm" and "+" not in side):
            continue
        model = side.split("-")[1]
        if kind == "memory":
            lines += ["", *gpu_memory.plan_table(model, shapes[model], [8192, 16384, 32768], 2 * args.max_length,
                                                 capacity)]  # fmt: skip
        if r is None:
            continue
        if kind == "profile":
            found = r.get("variants", {})
            lines += [
                "",
                f"{model}: the control ({r.get('base', '?')}, {args.steps - 1} untraced steps timed) and one "
                "setting changed at a time",
                HEADER,
                _row(f"{r.get('base', side)} (control)", r, shapes[model]),
            ]
            lines += [_row(mode, v, shapes[model], r) for mode, v in found.items()]
            if "profile" in r:
                lines += [
                    "",
                    f"the control's trace ({r.get('trace_file') or 'file not kept'}):",
                    *gpu_profile.table(r["profile"]),
                ]
            measured[f"{model} {r.get('base')}"] = (model, r)
            measured |= {f"{model} {mode}": (model, v) for mode, v in found.items()}
        else:
            lines += ["", HEADER, _row(side, r, shapes[model])]
            measured[side] = (model, r)
    rows = [(name, model, r) for name, (model, r) in measured.items() if "tokens_per_s" in r and r.get("packing")]
    if rows:
        lines += [
            "",
            "8 GPUs, per GPU, from the one-GPU runs (an estimate: compute-bound unless FSDP2's collectives "
            f"over NVLink at {gpu_memory.NVLINK_EFFICIENCY:.0%} of {gpu_memory.NVLINK_BYTES_S / 1e9:.0f} GB/s "
            "take longer than a micro-batch's compute; gpu_memory.py)",
            f"{'run':<34} {'tokens/s':>10} {'MFU':>6} {'comm ms':>8} {'compute ms':>10} {'GiB/GPU':>8}",
        ]
    for name, model, r in rows:
        real = r["packing"]["fill"] * r["micro_batch_tokens"]
        shape, reshard = shapes[model], r["reshard_after_forward"]
        e = gpu_memory.eight_gpus(shape, r["tokens_per_s"], r.get("mfu"), real, reshard)
        memory = (
            gpu_memory.plan(
                shape, 8, r["micro_batch_tokens"], r["activation_checkpointing"], r["fused_optimizer"], reshard
            )["peak"]
            / gpu_memory.GIB
        )
        mfu = f"{e['mfu']:6.1%}" if e["mfu"] is not None else "     -"
        lines.append(
            f"{name:<34} {e['tokens_per_s']:10,.0f} {mfu} {e['communication_s'] * 1e3:8.1f} "
            f"{e['compute_s'] * 1e3:10.1f} {memory:8.1f}"
        )
    return lines  # fmt: skip


def copy_trace(work: Path, out: str | None, side: str, limit: int = 16 * 2**20) -> str | None:
    """The profile's trace file beside ``out`` (the GPU machine returns files of at most 16 MiB); its path."""
    found = sorted(work.glob("*-trace.json.gz"))
    if not out or not found or found[-1].stat().st_size > limit:
        return None
    target = Path(out).parent / f"{side}-trace.json.gz"
    target.write_bytes(found[-1].read_bytes())
    found[-1].unlink()
    return str(target)
