"""``--liger-kernels``: Liger's fused Triton kernels (the ``liger-kernel`` package) in place of the model's RMSNorm,
SwiGLU MLP and rotary embedding, on CUDA GPUs. The cross-entropy kernels are left out: a reward model has no
language-model head. The kernels are exact (the same rewards and losses up to rounding); what they change is the
memory traffic of the element-wise work between the matmuls. ``--compile`` fuses the same work in another way, so
the two are alternatives (``bench/gpu_check.py`` measures both when a GPU is lent). Triton kernels need a GPU:
on a CPU the flag is refused before any work.
"""

from __future__ import annotations

from skyrm.requires import require

__all__ = ["check_liger", "apply_liger"]


def check_liger(device_type: str) -> None:
    """Before any work: the GPU and the package the kernels need."""
    if device_type != "cuda":
        raise ValueError("--liger-kernels: Liger's kernels are Triton kernels for CUDA GPUs and none was found; "
                         "leave it off on the CPU")  # fmt: skip
    require("--liger-kernels", "liger_kernel")


def apply_liger(model) -> None:
    """Patches ``model`` (a ``...ForSequenceClassification`` of a model type Liger knows, built on any device and not
    yet sharded) in place: RMSNorm, SwiGLU and RoPE."""
    from liger_kernel.transformers import _apply_liger_kernel_to_instance
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN as KNOWN

    model_type = model.config.model_type
    if model_type not in KNOWN:  # Liger itself would only log this and patch nothing
        raise ValueError(f"--liger-kernels: Liger has no kernels for {model_type} models; it has them for "
                         f"{', '.join(sorted(KNOWN))}")  # fmt: skip
    _apply_liger_kernel_to_instance(model=model, rms_norm=True, swiglu=True, rope=True, cross_entropy=False,
                                    fused_linear_cross_entropy=False)  # fmt: skip
