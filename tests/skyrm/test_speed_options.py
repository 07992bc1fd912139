"""The speed and memory settings the GPU check varies (bench/gpu_check.py, issue 21) on the tiny model on the CPU:
they leave the losses as they are, and do what they say (weights kept gathered, no checkpoints, a trace)."""

from __future__ import annotations

import gzip
import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from skyrm.config import ConfigError, load_config  # noqa: E402
from skyrm.distributed import layers, start, stop  # noqa: E402
from skyrm.trainer import build_model, train  # noqa: E402

from tests.skyrm.test_trainer import metrics, write_task  # noqa: E402


def config(tmp_path, name: str, **overrides):
    return load_config(preset="tiny", overrides={
        "data": str(tmp_path / "train.parquet"), "output_dir": str(tmp_path / name), "max_steps": 4,
        "batch_pairs": 8, "micro_batch_tokens": 256, "max_length": 128, "lr": 3e-3, "report_to": "none",
    } | overrides)  # fmt: skip


def test_the_speed_options_keep_the_losses(tmp_path):
    write_task(tmp_path / "train.parquet", 64, 0)
    runs = {"default": {}, "fused": {"fused_optimizer": True},
            "kept": {"reshard_after_forward": False, "profile_steps": 2, "checkpoint_every": 0}}  # fmt: skip
    losses = {}
    for name, overrides in runs.items():
        train(config(tmp_path, name, **overrides), log=lambda _: None)
        losses[name] = [r["loss"] for r in metrics(tmp_path / name)]
    assert losses["kept"] == losses["default"]
    assert losses["fused"] == pytest.approx(losses["default"], rel=1e-5)  # another kernel, the same AdamW
    assert (tmp_path / "default" / "checkpoints").is_dir() and not (tmp_path / "kept" / "checkpoints").exists()
    assert (tmp_path / "kept" / "model").is_dir()
    with gzip.open(tmp_path / "kept" / "profile" / "trace-rank0.json.gz") as f:
        events = json.load(f)["traceEvents"]
    names = {e.get("name", "") for e in events}
    steps = sorted(n for n in names if n.startswith("ProfilerStep#"))
    assert steps == ["ProfilerStep#2", "ProfilerStep#3"]  # the last two of four (the one before warms up)
    assert "aten::mm" in names and any(n.startswith("Optimizer.step#AdamW") for n in names)


def test_weights_stay_gathered_between_forward_and_backward(tmp_path):
    """FSDP2 swaps a layer's sharded parameters (DTensors) for the gathered ones (plain tensors) around its forward;
    --no-reshard-after-forward leaves the gathered ones there for the backward."""
    runtime = start()
    try:
        for reshard in (True, False):
            model, _ = build_model(config(tmp_path, "unused", reshard_after_forward=reshard), runtime)
            model(input_ids=torch.tensor([[1, 40, 41, 42]]))
            weight = layers(model)[0].mlp.up_proj.weight
            assert (type(weight).__name__ == "DTensor") is reshard
    finally:
        stop(runtime)


@pytest.mark.parametrize(("field", "value"), [("flex_block_size", 100), ("flex_block_size", 8),
                                              ("checkpoint_every", -1), ("profile_steps", -1),
                                              ("pad_to_multiple_of", 100), ("pad_to_multiple_of", -128)])  # fmt: skip
def test_speed_settings_are_checked(field, value):
    with pytest.raises(ConfigError, match=f"^{field}: must be"):
        load_config(overrides={field: value})


def test_rows_padded_to_a_multiple_need_flex_or_varlen_and_few_lengths():
    flex = {"attn_implementation": "flex_attention", "micro_batch_tokens": 16_384}
    assert load_config(overrides={**flex, "pad_to_multiple_of": 4096}).pad_to_multiple_of == 4096
    varlen = {**flex, "attn_implementation": "torch_varlen", "dtype": "bf16"}
    assert load_config(overrides={**varlen, "pad_to_multiple_of": 4096}).pad_to_multiple_of == 4096
    assert load_config(overrides={**flex, "pad_to_multiple_of": 2048, "compile": True}).compile
    with pytest.raises(ConfigError, match="^pad_to_multiple_of: pads packed rows under flex attention or torch_varlen"):
        load_config(overrides={"pad_to_multiple_of": 4096})
    with pytest.raises(ConfigError, match="^pad_to_multiple_of: pads packed rows"):
        load_config(overrides={**flex, "pad_to_multiple_of": 4096, "packing": False})
    for compiled in (False, True):
        with pytest.raises(ConfigError, match="up to 128 lengths.*a multiple of 128 of at least 2048"):
            load_config(overrides={**flex, "pad_to_multiple_of": 128, "compile": compiled})
    with pytest.raises(ConfigError, match="a multiple of 128 of at least 1280"):  # 10,000 / 8 = 1,250: not a multiple
        load_config(overrides={**flex, "micro_batch_tokens": 10_000, "pad_to_multiple_of": 1152})


@pytest.mark.parametrize(("attention", "multiple", "options", "limit"),
                         [("flex_attention", 2048, {"dynamic": False}, 18),
                          ("flex_attention", 4096, {"dynamic": False}, 10), ("flex_attention", 0, {}, 4),
                          ("torch_varlen", 0, {}, 16), ("torch_varlen", 4096, {"dynamic": False}, 10)])  # fmt: skip
def test_rows_padded_to_a_multiple_compile_once_per_length(monkeypatch, attention, multiple, options, limit):
    """--compile with --pad-to-multiple-of: each row length its own graph (dynamic=False) in training, with room under
    dynamo's limit for two a length, and evaluation (no gradients) uncompiled; rows of one length keep dynamo's
    default, as do a varlen kernel's rows, of any length, with room for 16 graphs."""
    from skyrm.model import tiny_config
    from skyrm.trainer import _compile_layers
    from transformers import LlamaForSequenceClassification

    compiled, ran = [], []

    def fake_compile(forward, **given):
        compiled.append(given)
        return lambda *args, **kwargs: ran.append("compiled") or forward(*args, **kwargs)

    monkeypatch.setattr(torch, "compile", fake_compile)
    model = LlamaForSequenceClassification(tiny_config())
    settings = {"attn_implementation": attention, "compile": True, "micro_batch_tokens": 16_384,
                "pad_to_multiple_of": multiple, "dtype": "bf16"}  # fmt: skip
    with torch._dynamo.config.patch(recompile_limit=4):
        _compile_layers(model, load_config(overrides=settings))
        assert torch._dynamo.config.recompile_limit == limit
    assert compiled == [options] * len(layers(model))
    ids = torch.tensor([[5, 6, 7]])
    model(input_ids=ids)
    assert len(ran) == len(layers(model))  # with gradients: every layer compiled
    with torch.no_grad():
        model(input_ids=ids)
    assert len(ran) == (1 if multiple else 2) * len(layers(model))  # evaluation: uncompiled where rows are padded
