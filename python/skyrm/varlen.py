"""``--attn-implementation torch_varlen``: attention through PyTorch's own variable-length FlashAttention kernel
(:func:`torch.nn.attention.varlen.varlen_attn`, torch >= 2.10; CUDA GPUs only, bf16 or fp16), with no package
beyond torch.

A packed row is given as the cumulative lengths of its sequences (``cu_seq_lens_q``/``max_length_q``, the keyword
arguments transformers' FlashAttention path reads too, made on the host by :mod:`skyrm.batching`): each token
attends causally to its own sequence only, and the kernel computes the attention of the sequences alone, with no
mask and no padding between them. Without them every row is one sequence: right-padded rows come out exact (under
causal attention no real token sees a later pad), which is how evaluation's padded rows run; left-padded rows, or
packed rows given without their lengths, would not (no mask reaches this function: transformers builds none for it),
and skyrm makes neither. Registered with transformers' ``AttentionInterface`` under :data:`TORCH_VARLEN` when asked
for.
"""

from __future__ import annotations

import inspect
import math

import torch

__all__ = ["TORCH_VARLEN", "register", "varlen_attention_forward"]

#: The name of this attention implementation, as ``--attn-implementation`` takes it.
TORCH_VARLEN = "torch_varlen"

#: The kernel and the keyword arguments its version takes (torch 2.10 asks ``is_causal``, later ones a window),
#: set by :func:`register`.
_KERNEL: dict = {}


def register() -> None:
    """Registers :func:`varlen_attention_forward` with transformers under :data:`TORCH_VARLEN`; a clear error
    where this torch has no varlen kernel."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        raise ValueError(f"--attn-implementation {TORCH_VARLEN} needs torch >= 2.10 (torch.nn.attention.varlen); "
                         f"this is torch {torch.__version__}: use flex_attention or sdpa") from None  # fmt: skip
    from transformers import AttentionInterface

    accepted = inspect.signature(varlen_attn).parameters
    _KERNEL.update(call=varlen_attn, window="window_size" in accepted, scale="scale" in accepted,
                   gqa="enable_gqa" in accepted)  # fmt: skip
    AttentionInterface.register(TORCH_VARLEN, varlen_attention_forward)


def varlen_attention_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers' attention-function contract: ``query`` (batch, heads, length, dim), ``key`` and ``value``
    (batch, key-value heads, length, dim); returns the output as (batch, length, heads, dim) and no weights.
    ``attention_mask`` is not read (see the module's docstring)."""
    if dropout:
        raise ValueError(f"{TORCH_VARLEN} has no attention dropout; set the model's attention_dropout to 0")
    if kwargs.get("sliding_window") or kwargs.get("softcap"):
        raise ValueError(f"{TORCH_VARLEN} has no sliding window or logit soft-capping, which this model uses: "
                         "use flex_attention or eager")  # fmt: skip
    if query.dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"{TORCH_VARLEN} computes in bf16 or fp16, got {query.dtype}: train with --dtype bf16")
    batch, heads, length, dim = query.shape
    starts, longest = kwargs.get("cu_seq_lens_q"), kwargs.get("max_length_q")
    if starts is None:  # one sequence a row
        starts = torch.arange(0, (batch + 1) * length, length, dtype=torch.int32, device=query.device)
        longest = length
    elif batch != 1:
        raise ValueError(f"packed sequences come in one row, got {batch} rows")
    options = {"window_size": (-1, 0)} if _KERNEL["window"] else {"is_causal": True}
    if _KERNEL["scale"]:
        options["scale"] = scaling
    elif scaling is not None and not math.isclose(scaling, dim**-0.5):
        raise ValueError(f"this torch's varlen kernel has no scale, and the model's is {scaling}, not 1/sqrt({dim})")
    if _KERNEL["gqa"] and key.shape[1] != heads:
        options["enable_gqa"] = True

    def tokens(states: torch.Tensor) -> torch.Tensor:  # (batch, heads, length, dim) -> (tokens, heads, dim)
        return states.transpose(1, 2).reshape(batch * length, states.shape[1], dim)

    out = _KERNEL["call"](tokens(query), tokens(key), tokens(value), starts, starts, longest, longest, **options)
    return out.view(batch, length, heads, dim), None
