"""The training loop on the tiny model: a learnable task is learnt, the loss does not depend on micro-batching,
the exported model reloads with Hugging Face and gives the same rewards."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from skyrm.batching import micro_batches  # noqa: E402
from skyrm.config import load_config  # noqa: E402
from skyrm.data import encode_pairs  # noqa: E402
from skyrm.model import rewards  # noqa: E402
from skyrm.train import main  # noqa: E402
from skyrm.trainer import learning_rate, train  # noqa: E402


def metrics(folder) -> list[dict]:
    with open(f"{folder}/metrics.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def write_task(path, n: int, seed: int) -> None:
    """Chosen answers agree politely, rejected ones refuse rudely: learnable from a few tokens."""
    rng = random.Random(seed)
    words = ["apple", "river", "stone", "cloud", "piano", "lemon", "tiger", "glass"]
    rows = []
    for _ in range(n):
        topic = " ".join(rng.choice(words) for _ in range(rng.randint(2, 6)))
        rows.append({"prompt": f"Tell me about {topic}.", "chosen": f"Sure, happy to help with {topic}.",
                     "rejected": f"No. Go away, {topic} is dull."})  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows), path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    write_task(folder / "train.parquet", 256, 0)
    write_task(folder / "test.parquet", 64, 1)
    config = load_config(preset="tiny", overrides={
        "data": str(folder / "train.parquet"), "eval_data": str(folder / "test.parquet"),
        "output_dir": str(folder / "run"), "max_steps": 30, "batch_pairs": 8, "micro_batch_tokens": 512,
        "max_length": 128, "lr": 3e-3, "warmup_ratio": 0.1, "peak_tflops": 0.5,
    })  # fmt: skip
    return config, train(config, log=lambda _: None)


def test_a_learnable_task_is_learnt(trained):
    config, summary = trained
    lines = metrics(config.output_dir)
    assert [r["step"] for r in lines] == list(range(1, 31))
    first, last = sum(r["loss"] for r in lines[:5]) / 5, sum(r["loss"] for r in lines[-5:]) / 5
    assert last < 0.5 * first and first > 0.5
    assert summary["eval"]["accuracy"] > 0.95 and summary["eval"]["pairs"] == 64


def test_metrics_carry_throughput_and_mfu(trained):
    config, _ = trained
    from skyrm.telemetry import FlopCounter
    from skyrm.trainer import build_model

    lines = metrics(config.output_dir)
    model, _ = build_model(config)
    flops = FlopCounter(model)
    assert flops.non_embedding == sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n)
    for r in lines:
        assert r["tokens"] > 0 and r["tokens_per_s"] > 0 and 0 < r["mfu"] < 1 and 0 < r["lr"] <= config.lr * (1 + 1e-9)
        # MFU = FLOPs / s / peak, with FLOPs at least 6 x N per token
        assert r["mfu"] * config.peak_tflops * 1e12 >= 6 * flops.non_embedding * r["tokens_per_s"] * 0.999
    events = list((Path(config.output_dir) / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_the_exported_model_reloads_with_the_same_rewards(trained):
    config, _ = trained
    folder = f"{config.output_dir}/model"
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    assert model.config.num_labels == 1 and tokenizer.chat_template
    summary = json.loads((Path(config.output_dir) / "summary.json").read_text())
    assert model.config.reward_mean == pytest.approx(summary["eval"]["reward_mean"])
    assert model.config.reward_std == pytest.approx(summary["eval"]["reward_std"]) and model.config.reward_std > 0
    table = pa.table({"prompt": ["Tell me about stone."], "chosen": ["Sure, happy to help with stone."],
                      "rejected": ["No. Go away, stone is dull."]})  # fmt: skip
    encoded = encode_pairs(table, tokenizer, 128)
    batch = micro_batches(encoded.chosen, encoded.rejected, [0], 1024, tokenizer.pad_token_id, packing=False)[0]
    with torch.no_grad():
        ours = rewards(model, batch.input_ids, batch.attention_mask)
        hf = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.squeeze(-1)
    torch.testing.assert_close(ours, hf, rtol=0, atol=1e-6)
    assert ours[0] > ours[1]


def test_the_loss_does_not_depend_on_micro_batching(tmp_path):
    """Nor on packing, activation checkpointing or compiled layers (flex attention's packed rows: test_batching on
    the CPU, which has no flex backward, and bench/gpu_check.py for training)."""
    write_task(tmp_path / "train.parquet", 64, 2)
    losses = []
    for i, (budget, packing, checkpointing, compiled) in enumerate((
        (256, True, False, False), (2048, True, False, False), (2048, False, False, False), (256, False, True, False),
        (256, True, False, True),
    )):  # fmt: skip
        config = load_config(preset="tiny", overrides={
            "data": str(tmp_path / "train.parquet"), "output_dir": str(tmp_path / f"run-{i}"),
            "max_steps": 3, "batch_pairs": 16, "micro_batch_tokens": budget, "max_length": 128,
            "packing": packing, "activation_checkpointing": checkpointing, "compile": compiled, "dtype": "fp32",
        })  # fmt: skip
        train(config, log=lambda _: None)
        losses.append([r["loss"] for r in metrics(config.output_dir)])
    for other in losses[1:]:
        assert other == pytest.approx(losses[0], rel=1e-4, abs=1e-5)


def test_schedule():
    config = load_config(preset="tiny", overrides={"lr": 1.0, "warmup_ratio": 0.1, "min_lr_ratio": 0.1})
    values = [learning_rate(config, s, 100) for s in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert 0.1 < values[-1] < 0.11 and all(a >= b for a, b in zip(values[9:], values[10:], strict=False))
    constant = load_config(preset="tiny", overrides={"lr": 1.0, "schedule": "constant", "warmup_ratio": 0.0})
    assert {learning_rate(constant, s, 10) for s in range(10)} == {1.0}


def test_command_line_errors(capsys, tmp_path):
    assert main(["--loss", "nope"]) == 2 and "loss: must be one of" in capsys.readouterr().err
    assert main(["--model", "tiny"]) == 2 and "--data" in capsys.readouterr().err
    write_task(tmp_path / "few.parquet", 4, 3)
    run = tmp_path / "run"
    assert main(["--preset", "tiny", "--data", str(tmp_path / "few.parquet"), "--output-dir", str(run)]) == 1
    assert "fewer than one step of 8" in capsys.readouterr().err
    assert not run.exists()  # a failed run leaves no folder behind


def test_a_layout_to_convert_first_names_to_pairs(capsys, tmp_path, shared_data):
    """HH-RLHF's real transcripts (chosen/rejected strings, no prompt) have no answer as skyrm reads pairs: the error
    says to convert them with skyfilter.to_pairs, not to change lengths that dropped nothing."""
    source = shared_data / "prefs/hh_rlhf_harmless_base_test/test.jsonl.gz"
    args = ["--preset", "tiny", "--data", str(source), "--output-dir", str(tmp_path / "run")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "skyfilter.to_pairs" in err and "'no_answer'" in err and "--max-length" not in err.split("encoding")[-1]
