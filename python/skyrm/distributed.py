"""Processes and sharding: every run is a torch.distributed job, one process or many, and the model is sharded
with FSDP2 (``fully_shard`` per decoder layer, then the root), so one code path serves a CPU test, one GPU and
many nodes under torchrun.

* :func:`start` joins the process group torchrun describes (``RANK``, ``WORLD_SIZE``, ...), or makes a
  one-process group when the script was started without torchrun; :func:`stop` leaves it.
* :func:`shard_model` shards a model that was built on the meta device and fills it from rank 0's weights
  (only rank 0 ever holds the whole model in memory); bf16 compute with fp32 master weights and fp32 gradient
  reductions on the GPU.
* :func:`full_state_dict` gathers the weights on rank 0 (for the export).
* :func:`same_count` pads a rank's micro-batches to the largest count of any rank: FSDP gathers each layer's
  weights in every forward, so all ranks must run the same number of forwards.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Runtime", "start", "stop", "shard_model", "full_state_dict", "same_count", "share", "all_sum"]


@dataclass(frozen=True)
class Runtime:
    rank: int
    world: int
    device: torch.device
    owns_group: bool  # this run made the process group, and leaves it at the end

    @property
    def main(self) -> bool:
        return self.rank == 0


def start() -> Runtime:
    """Joins torchrun's process group (NCCL on GPUs, gloo on CPUs), or makes a one-process group."""
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"
    owns = not dist.is_initialized()
    if owns and "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        dist.init_process_group(backend)
    elif owns:
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    return Runtime(dist.get_rank(), dist.get_world_size(), device, owns)


def stop(runtime: Runtime, completed: bool = False) -> None:
    """Leaves the process group this run made. After a ``completed`` run every rank first waits for the others: a
    rank whose group went down while another still worked (rank 0 writing the results) now and then aborted as it
    exited, in gloo's threads ("terminate called without an active exception"). After a failure it leaves at once
    (torchrun then stops the other ranks)."""
    if runtime.owns_group and dist.is_initialized():
        if completed and runtime.world > 1:
            dist.barrier()
        dist.destroy_process_group()


def layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The decoder layers of a ``...ForSequenceClassification`` model (Llama, Gemma-2, Qwen, Mistral, ...)."""
    from skyrm.model import decoder

    found = getattr(decoder(model), "layers", None)
    if not isinstance(found, torch.nn.ModuleList):
        raise ValueError(f"{type(model).__name__}: no decoder layers at .{model.base_model_prefix}.layers to shard")
    return found


def shard_model(model, weights: dict | None, buffers: dict | None, runtime: Runtime, bf16: bool,
                reshard_after_forward: bool = True) -> None:  # fmt: skip
    """Shards ``model`` (built on the meta device, identically on every rank) in place and loads the weights:
    ``weights`` and ``buffers`` are the full model's state dict and buffers on rank 0, None elsewhere.
    ``reshard_after_forward`` False keeps each layer's gathered weights from its forward to its backward."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

    from skyrm.model import SHARDED_ENTRY, reward_forward

    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else None
    kwargs = {"mp_policy": policy} if policy is not None else {}
    for layer in layers(model):
        fully_shard(layer, reshard_after_forward=reshard_after_forward, **kwargs)
    fully_shard(model, reshard_after_forward=reshard_after_forward, **kwargs)
    setattr(model, SHARDED_ENTRY, functools.partial(reward_forward, model))
    register_fsdp_forward_method(model, SHARDED_ENTRY)
    model.to_empty(device=runtime.device)
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    set_model_state_dict(model, weights if runtime.main else {}, options=options)
    # Buffers (rotary frequencies, ...) are not in the state dict and came out of to_empty uninitialised.
    for name, buffer in model.named_buffers():
        if runtime.main:
            buffer.copy_(buffers[name])
        dist.broadcast(buffer, src=0)


def full_state_dict(model) -> dict:
    """The whole model's weights on rank 0's CPU (empty on the other ranks); every rank must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def share(items: list, runtime: Runtime) -> list:
    """This rank's contiguous share of ``items`` (shares differ by at most one item)."""
    per, extra = divmod(len(items), runtime.world)
    start = runtime.rank * per + min(runtime.rank, extra)
    return items[start : start + per + (runtime.rank < extra)]


def all_sum(values: list[float], runtime: Runtime) -> list[float]:
    """The sums over all ranks of a few numbers."""
    if runtime.world == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=runtime.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def same_count(batches: list, runtime: Runtime) -> list[tuple[object, bool]]:
    """``(batch, real)`` pairs, padded with repeats of the first batch (``real`` False: the caller weighs them 0)
    up to the largest number of batches on any rank."""
    count = torch.tensor([len(batches)], device=runtime.device)
    if runtime.world > 1:
        dist.all_reduce(count, op=dist.ReduceOp.MAX)
    if not batches and int(count.item()):
        raise ValueError("a rank has no micro-batch to pad with")
    return [(b, True) for b in batches] + [(batches[0], False)] * (int(count.item()) - len(batches))
