"""What a run reports: model FLOPs and MFU, and the progress shown while it runs (a bar on a terminal, plain lines
otherwise). Where the records go (``metrics.jsonl``, TensorBoard, W&B): :mod:`skyrm.tracking`.

Model FLOPs of a training token (forward and backward, recomputation under activation checkpointing not
counted, as MFU is defined): ``6 x N`` for the N non-embedding parameters, plus causal attention,
``6 x layers x hidden x length`` for a token of a sequence of ``length`` tokens (QK^T and AV, forward and backward,
half the square for the causal mask).
"""

from __future__ import annotations

import sys
import time

import torch

__all__ = ["FlopCounter", "peak_flops", "Progress"]

#: Dense bf16 peak (tensor cores, no sparsity) of common training GPUs, in FLOP/s, by a substring of the device
#: name; the first match wins, so the PCIe and NVL H100s come before the SXM one.
PEAK_BF16 = {"H100 PCIe": 756e12, "H100 NVL": 835e12, "H200": 989e12, "H100": 989e12, "H800": 989e12,
             "A100": 312e12, "A800": 312e12, "L40S": 362e12}  # fmt: skip


class FlopCounter:
    def __init__(self, model) -> None:
        config = model.config
        self.non_embedding = sum(
            p.numel() for name, p in model.named_parameters() if "embed_tokens" not in name and "wte" not in name
        )
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        # the attention width (heads x head size), which is not the hidden size for every model (Gemma-2)
        self.layers, self.hidden = config.num_hidden_layers, config.num_attention_heads * head_dim

    def __call__(self, tokens: int, square_tokens: int) -> float:
        """FLOPs of training on sequences with ``tokens`` tokens in all and ``square_tokens`` = sum of length^2."""
        return 6.0 * self.non_embedding * tokens + 6.0 * self.layers * self.hidden * square_tokens


def peak_flops(device: torch.device, tflops: float | None) -> float | None:
    """Peak FLOP/s of one device: ``tflops`` when given, else the table's value for a known GPU, else None."""
    if tflops is not None:
        return tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """The steps as they finish: a tqdm bar (steps, loss, accuracy, tokens/s, ETA) on stderr when it is a terminal,
    otherwise one plain line through ``log`` every ``every`` steps and at the last (``metrics.jsonl`` has them all).
    ``enabled`` False (ranks other than 0) shows nothing."""

    def __init__(self, total: int, first: int, log, every: int = 1, enabled: bool = True,
                 terminal: bool | None = None) -> None:  # fmt: skip
        from tqdm.auto import tqdm

        self.total, self.first, self.log, self.every, self.enabled = total, first, log, every, enabled
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.bar = (tqdm(total=total, initial=first, desc="training", unit="step", file=sys.stderr)
                    if enabled and self.terminal else None)  # fmt: skip
        self.started = time.perf_counter()

    def update(self, record: dict) -> None:
        """``record``: the step's metrics (``step``, ``loss``, ``accuracy``, ``lr``, ``tokens_per_s``, ``mfu``)."""
        step = record["step"]
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{record['loss']:.4f}", acc=f"{record['accuracy']:.3f}",
                                 tok_s=f"{record['tokens_per_s']:,.0f}", refresh=False)  # fmt: skip
            self.bar.update(1)
            return
        if not self.enabled or (step % self.every and step != self.total):
            return
        elapsed = time.perf_counter() - self.started
        eta = elapsed / max(1, step - self.first) * (self.total - step)
        mfu = f"  MFU {record['mfu']:.1%}" if record.get("mfu") is not None else ""
        self.log(f"step {step}/{self.total}  loss {record['loss']:.4f}  acc {record['accuracy']:.3f}  "
                 f"lr {record['lr']:.2e}  {record['tokens_per_s']:,.0f} tok/s{mfu}  ETA {_clock(eta)}")  # fmt: skip

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
