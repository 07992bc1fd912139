"""A training step that cannot go on, said in one line: a non-finite loss or gradient (the step and its pairs, as
rows of the input), or the GPU out of memory (the settings that lower it, with their values); and the last check
before an export, that every weight is finite.

A step whose loss or gradient norm is NaN or infinite stops the run before the optimiser applies it, so the model
and the checkpoints stay as they were after the previous step; ``--skip-nonfinite`` skips such a step instead
(its gradients dropped, the optimiser untouched) and counts it.
"""

from __future__ import annotations

import torch

from skyrm.config import TrainConfig

__all__ = ["StepError", "nonfinite_message", "oom_message", "check_finite"]

#: The most input rows named in a message.
SHOWN_ROWS = 32


class StepError(ValueError):
    """A training step that cannot go on; the message names the step and what to do."""


def _rows(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:SHOWN_ROWS])
    return shown + (f", ... ({len(rows) - SHOWN_ROWS} more)" if len(rows) > SHOWN_ROWS else "")


def nonfinite_message(step: int, loss: float, grad_norm: float, rows: list[int], bad_rows: list[int]) -> str:
    """``step`` counts from 1; ``rows``: the input rows of the step's pairs; ``bad_rows``: those whose reward was
    not finite (none: the loss or the gradient overflowed on finite rewards)."""
    where = f"rewards not finite for input row(s) {_rows(bad_rows)}" if bad_rows else "the rewards were finite"
    return (f"step {step}: loss {loss}, gradient norm {grad_norm} ({where}; the step's pairs are input rows "
            f"{_rows(sorted(rows))})")  # fmt: skip


def oom_message(step: int | None, tokens: int, device: torch.device, config: TrainConfig) -> str:
    """Out of memory at ``step`` (from 1) in a micro-batch of ``tokens`` tokens, or (``step`` None) outside the
    training steps: the settings that lower it."""
    knobs = [f"lower --micro-batch-tokens (now {config.micro_batch_tokens:,}; at least 2 x --max-length "
             f"{config.max_length:,})"]  # fmt: skip
    if not config.activation_checkpointing:
        knobs.append("turn on --activation-checkpointing (now off)")
    if config.grad_sync == "step":
        knobs.append("use --grad-sync micro-batch (now step: every rank holds the whole gradients)")
    if not config.reshard_after_forward:
        knobs.append("drop --no-reshard-after-forward")
    if not config.lora_r:
        knobs.append("or train LoRA adapters (--lora-r 16)")
    where = (f"at step {step} (a micro-batch of {tokens:,} tokens)" if step is not None
             else "outside the training steps (building the model, an evaluation or the export)")  # fmt: skip
    return f"out of memory on {device} {where}: " + ", ".join(knobs)


def check_finite(weights: dict) -> None:
    """Refuses weights that hold a NaN or an infinity (a poisoned model is never exported)."""
    bad = [name for name, tensor in weights.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        raise StepError(f"the trained weights hold NaN or infinite values ({', '.join(bad[:4])}"
                        f"{', ...' if len(bad) > 4 else ''}): nothing exported")  # fmt: skip
