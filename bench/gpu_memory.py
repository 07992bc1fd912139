"""The memory plan of Llama-shaped reward models under skyrm's training (issue 21), and the per-GPU speed of 8 GPUs
estimated from one GPU's measured speed. Arithmetic only: bench/gpu_check.py measures the runs it is checked on.

Memory per GPU (bytes), for P parameters (P_layer a decoder layer's, P_root the embeddings, final norm and score
head), g GPUs, T tokens per micro-batch, L layers, hidden h, MLP width i, key/value width kv (= KV heads x head size):

* FSDP2 shards: fp32 weights 4P/g, fp32 gradients 4P/g (accumulated over a step's micro-batches), AdamW's two
  fp32 moments 8P/g; during the step torch's default foreach AdamW also holds a temporary of the second moments'
  square roots, 4P/g (``--fused-optimizer``: none);
* gathered bf16 weights: the root's 2 P_root from the forward to the backward, and a layer's 2 P_layer for the
  layer running and one prefetched (``--no-reshard-after-forward``: every layer's, 2 (P - P_root), kept from its
  forward to its backward); a layer's gradients before their reduce-scatter, 2 P_layer in bf16 and 4 P_layer in
  fp32 (the reduction's dtype);
* activations, bf16: a decoder layer keeps A = 20h + 4kv + 8i bytes a token for its backward (eager Hugging Face
  Llama: the two RMSNorms' inputs and fp32 internals, q, k, v, the attention output, the MLP's gate, up, SiLU and
  product; flex attention keeps no length x length matrix), so T x L x A without checkpointing; with activation
  checkpointing each layer keeps its input (2h) and one layer at a time is recomputed: T x (2hL + A); plus 8h a token
  outside the layers (embeddings, final norm). Compiled layers keep less (Inductor's fused kernels save fewer
  intermediates): the plan is the eager upper bound;
* the peak is the larger of the backward of a step's later micro-batches (shards, gathered weights and gradients,
  activations) and the optimizer step (shards and the foreach temporary).

Check of A: the 1B model, eager flex attention, T = 16,384, foreach AdamW: planned 46.1 GiB, measured 46.3 GiB in
docs/benchmarks.md's run 3 (the compiled run, 38.3 GiB, is under the plan).

Host memory: rank 0 reads the whole model in fp32 (4P) before sharding it, and the export gathers it again.
FSDP2's ``CPUOffloadPolicy`` (not in skyrm) would keep the shards on the host: 16P/g of pinned host memory, the
optimizer step on the CPU, and only the gathered weights and activations on the GPU.

8 GPUs from one (an estimate): each GPU computes its share of a step as the one GPU did (the measured tokens/s and
MFU), and FSDP2's collectives run on their own streams beside it: per micro-batch a ring all-gather of the bf16
weights (twice when resharding after the forward) and a reduce-scatter of the fp32 gradients move
(g - 1) / g x P x (2 x gathers + 4) bytes a GPU over NVLink. The step is compute-bound while that takes less time
than the micro-batch's compute; beyond, the exposed part slows it. The optimizer step (8x smaller a GPU) and the
communication's use of the GPU's memory bandwidth are left out.
"""

from __future__ import annotations

GIB = 2**30
#: H200 SXM: one direction of NVLink 4 (900 GB/s both ways), and the share of it a ring collective is assumed to get
NVLINK_BYTES_S = 450e9
NVLINK_EFFICIENCY = 0.8
#: an H200's memory as run 1 read it (nvidia-smi: 143,771 MiB), less what the CUDA context and allocator keep
H200_BYTES = 143_771 * 2**20
RESERVED_BYTES = 3 * GIB


def parameters(shape: dict) -> dict:
    """Parameter counts of a Llama-shaped ``...ForSequenceClassification`` (one label, untied, no LM head)."""
    h, i, layers = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    kv = h // shape["num_attention_heads"] * shape["num_key_value_heads"]
    layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h  # q, o; k, v; gate, up, down; two RMSNorm weights
    root = shape["vocab_size"] * h + h + h  # embeddings, final norm, score head
    return {"layer": layer, "layers": layers, "root": root, "total": root + layers * layer}


def activation_bytes(shape: dict, checkpointing: bool) -> int:
    """Activation bytes a token of a micro-batch keeps at the backward's peak."""
    h, i, layers = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    kv = h // shape["num_attention_heads"] * shape["num_key_value_heads"]
    per_layer = 20 * h + 4 * kv + 8 * i
    return (2 * h * layers + per_layer if checkpointing else layers * per_layer) + 8 * h


def plan(shape: dict, gpus: int, tokens: int, checkpointing: bool, fused: bool, reshard: bool = True) -> dict:
    """Bytes a GPU holds: each part, and the peak."""
    p = parameters(shape)
    total, layer, root = p["total"], p["layer"], p["root"]
    parts = {"weights": 4 * total / gpus, "gradients": 4 * total / gpus, "adam_moments": 8 * total / gpus,
             "gathered": 2 * root + (4 * layer if reshard else 2 * (total - root)) + 6 * layer,
             "activations": tokens * activation_bytes(shape, checkpointing),
             "adam_temporary": 0 if fused else 4 * total / gpus}  # fmt: skip
    shards = parts["weights"] + parts["gradients"] + parts["adam_moments"]
    backward = shards + parts["gathered"] + parts["activations"]
    return {**parts, "backward_peak": backward, "step_peak": shards + parts["adam_temporary"],
            "peak": max(backward, shards + parts["adam_temporary"])}  # fmt: skip


def largest_tokens(shape: dict, gpus: int, checkpointing: bool, fused: bool, capacity: float,
                   smallest: int) -> int:  # fmt: skip
    """The largest micro-batch (a power of two times ``smallest``) whose plan fits in ``capacity`` bytes; 0: none."""
    tokens, fits = smallest, 0
    while tokens <= 2**22 and plan(shape, gpus, tokens, checkpointing, fused)["peak"] <= capacity:
        fits, tokens = tokens, 2 * tokens
    return fits


def plan_table(name: str, shape: dict, tokens: list[int], smallest: int, capacity: float = H200_BYTES) -> list[str]:
    """One line per GPU count, activation checkpointing and AdamW kernel: shards, peak at each micro-batch size,
    and the largest micro-batch that fits."""
    usable = capacity - RESERVED_BYTES
    p = parameters(shape)
    lines = [f"{name}: {p['total']:,} parameters ({p['layers']} layers of {p['layer']:,}, {p['root']:,} outside); "
             f"planned per GPU against {usable / GIB:.0f} GiB usable of {capacity / GIB:.0f} GiB",
             f"{'GPUs':>4} {'act. ckpt':>9} {'AdamW':>7} {'shards GiB':>10} "
             + " ".join(f"{f'peak @{t // 1024}K':>10}" for t in tokens) + f" {'fits up to':>11}"]  # fmt: skip
    for gpus in (1, 8):
        for checkpointing in (True, False):
            for fused in (False, True):
                rows = [plan(shape, gpus, t, checkpointing, fused) for t in tokens]
                shards = rows[0]["weights"] + rows[0]["gradients"] + rows[0]["adam_moments"]
                fit = largest_tokens(shape, gpus, checkpointing, fused, usable, smallest)
                lines.append(f"{gpus:>4} {'yes' if checkpointing else 'no':>9} {'fused' if fused else 'foreach':>7} "
                             f"{shards / GIB:10.1f} " + " ".join(f"{r['peak'] / GIB:10.1f}" for r in rows)
                             + f" {f'{fit:,}' if fit else 'none':>11}")  # fmt: skip
    shards, host = 16 * p["total"] / GIB, 20 * p["total"] / GIB
    lines.append(f"FSDP2 CPU offload (not in skyrm): {shards:.0f} GiB of pinned host memory on one GPU for the shards, "
                 f"{host:.0f} GiB with rank 0's fp32 copy of the model while loading")  # fmt: skip
    return lines


def eight_gpus(shape: dict, tokens_per_s: float, mfu: float | None, micro_batch_tokens: float, reshard: bool = True,
               gpus: int = 8) -> dict:  # fmt: skip
    """Per-GPU tokens/s and MFU of ``gpus`` GPUs from one GPU's measured ``tokens_per_s`` (real tokens a second)
    with micro-batches of ``micro_batch_tokens`` real tokens on average: see the module's docstring."""
    total = parameters(shape)["total"]
    moved = (gpus - 1) / gpus * total * (2 * (2 if reshard else 1) + 4)
    communication = moved / (NVLINK_BYTES_S * NVLINK_EFFICIENCY)
    compute = micro_batch_tokens / tokens_per_s
    slowdown = max(1.0, communication / compute)
    return {"tokens_per_s": tokens_per_s / slowdown, "mfu": mfu / slowdown if mfu is not None else None,
            "communication_s": communication, "compute_s": compute, "bytes": moved}  # fmt: skip
