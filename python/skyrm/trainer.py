"""The training loop, read top to bottom: build the model and data, then for every optimiser step run its
micro-batches, normalise the loss by the step's number of pairs, clip, step, log; at the end export a Hugging Face
model and report held-out accuracy.

One process for now (CPU, or one GPU with bf16 autocast); multi-process FSDP2, sharded checkpoints, ``--resume``
and flash-attention varlen packing on the GPU (packed rows use a block mask for now) come next (issue 5). What is
already fixed for them: the step plan does not depend on the number of processes, and the loss is a sum over
pairs divided by the step's pair count, so splitting a step over micro-batches or processes does not change it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch

from skyrm.batching import MicroBatch, micro_batches, step_plan
from skyrm.config import TrainConfig
from skyrm.data import EncodedPairs, encode_pairs, read_pairs
from skyrm.losses import pair_losses, pair_metrics
from skyrm.model import rewards, tiny_config, tiny_tokenizer

__all__ = ["build_model", "learning_rate", "train", "evaluate"]


def build_model(config: TrainConfig):
    """The model and tokenizer: the built-in tiny one, or any Hugging Face decoder as a one-label classifier
    (a GGUF file when ``gguf_file`` is given). A tokenizer without a pad token gets its EOS token as pad."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, LlamaForSequenceClassification

    torch.manual_seed(config.seed)
    if config.model == "tiny":
        tokenizer = tiny_tokenizer()
        return LlamaForSequenceClassification(tiny_config(pad_token_id=tokenizer.pad_token_id)), tokenizer
    kwargs = {"gguf_file": config.gguf_file} if config.gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(config.model, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    extra = {"attn_implementation": config.attn_implementation} if config.attn_implementation else {}
    model = AutoModelForSequenceClassification.from_pretrained(
        config.model, num_labels=1, torch_dtype=torch.float32, **kwargs, **extra
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def learning_rate(config: TrainConfig, step: int, total: int) -> float:
    """Linear warmup, then cosine, linear or constant down to ``min_lr_ratio`` of the peak at the last step."""
    warmup = int(config.warmup_ratio * total)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)  # the last step keeps a little above the floor
    floor = config.min_lr_ratio
    if config.schedule == "constant":
        scale = 1.0
    elif config.schedule == "linear":
        scale = floor + (1 - floor) * (1 - progress)
    else:
        scale = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return config.lr * scale


def _pair_rewards(model, batch: MicroBatch) -> tuple[torch.Tensor, torch.Tensor]:
    values = rewards(model, batch.input_ids, batch.attention_mask, batch.position_ids, batch.ends).float()
    pairs = values.view(-1, 2)
    return pairs[:, 0], pairs[:, 1]


def evaluate(model, encoded: EncodedPairs, config: TrainConfig, pad_id: int) -> dict:
    """Pairwise accuracy (ties wrong), mean margin, and the mean and std of all rewards."""
    model.eval()
    chosen_all, rejected_all = [], []
    with torch.no_grad():
        for batch in micro_batches(encoded.chosen, encoded.rejected, list(range(len(encoded))),
                                   config.micro_batch_tokens, pad_id, packing=False):  # fmt: skip
            chosen, rejected = _pair_rewards(model, batch.to(next(model.parameters()).device))
            chosen_all.append(chosen)
            rejected_all.append(rejected)
    model.train()
    chosen, rejected = torch.cat(chosen_all), torch.cat(rejected_all)
    both = torch.cat([chosen, rejected])
    metrics = pair_metrics(chosen, rejected)
    return {
        "pairs": len(chosen),
        "accuracy": metrics["correct"].item() / len(chosen),
        "margin": metrics["margin"].item() / len(chosen),
        "reward_mean": both.mean().item(),
        "reward_std": both.std().item(),
    }


def train(config: TrainConfig, log=print) -> dict:
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = build_model(config)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    if config.activation_checkpointing:
        model.gradient_checkpointing_enable()
    # bf16 autocast on the GPU (fp32 master weights, fp32 losses); the CPU computes in fp32
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda" and config.dtype == "bf16")
    loss_config = config.loss_config()
    data = encode_pairs(read_pairs(config.data, config.split), tokenizer, config.max_length, config.truncation)
    log(f"data: {len(data):,} pairs ({dict(data.dropped) or 'none dropped'})")
    held_out = None
    if config.eval_data:
        held_out = encode_pairs(read_pairs(config.eval_data, config.eval_split), tokenizer, config.max_length,
                                config.truncation)  # fmt: skip
    if len(data) < config.batch_pairs:
        raise ValueError(
            f"{config.data}: {len(data):,} pairs left after encoding (dropped: {dict(data.dropped)}), fewer than "
            f"one step of {config.batch_pairs}; raise --max-length, use --truncation truncate, or lower --batch-pairs"
        )
    plan = step_plan(len(data), config.batch_pairs, config.epochs, config.seed)
    if config.max_steps is not None:
        plan = plan[: config.max_steps]
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(config.adam_beta1, config.adam_beta2),
                                  weight_decay=config.weight_decay)  # fmt: skip
    model.train()
    pad_id = tokenizer.pad_token_id
    with open(out / "metrics.jsonl", "w", encoding="utf-8") as metrics_file:
        for step, pairs in enumerate(plan):
            start = time.perf_counter()
            lr = learning_rate(config, step, len(plan))
            for group in optimizer.param_groups:
                group["lr"] = lr
            total_loss, correct, margin, tokens = 0.0, 0.0, 0.0, 0
            for batch in micro_batches(data.chosen, data.rejected, pairs, config.micro_batch_tokens, pad_id,
                                       packing=config.packing):  # fmt: skip
                with autocast:
                    chosen, rejected = _pair_rewards(model, batch.to(device))
                # why: a sum over pairs divided by the step's pair count is the same whatever the micro-batching
                loss = pair_losses(chosen, rejected, loss_config).sum() / len(pairs)
                loss.backward()
                total_loss += loss.item()
                metrics = pair_metrics(chosen.detach(), rejected.detach())
                correct += metrics["correct"].item()
                margin += metrics["margin"].item()
                tokens += batch.tokens
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip).item()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            seconds = time.perf_counter() - start
            record = {"step": step + 1, "loss": total_loss, "accuracy": correct / len(pairs),
                      "margin": margin / len(pairs), "lr": lr, "grad_norm": grad_norm, "tokens": tokens,
                      "tokens_per_s": tokens / seconds}  # fmt: skip
            metrics_file.write(json.dumps(record) + "\n")
            if (step + 1) % config.log_every == 0 or step + 1 == len(plan):
                log(f"step {step + 1}/{len(plan)}  loss {total_loss:.4f}  acc {record['accuracy']:.3f}  "
                    f"lr {lr:.2e}  {record['tokens_per_s']:,.0f} tok/s")  # fmt: skip
    summary = {"steps": len(plan), "pairs": len(data), "dropped": dict(data.dropped), "config": asdict(config)}
    if held_out is not None and len(held_out):
        summary["eval"] = evaluate(model, held_out, config, pad_id)
        log(f"held-out accuracy {summary['eval']['accuracy']:.3f} on {summary['eval']['pairs']:,} pairs")
        # users of the exported model can normalise its rewards with the statistics of the held-out split
        model.config.reward_mean = summary["eval"]["reward_mean"]
        model.config.reward_std = summary["eval"]["reward_std"]
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
