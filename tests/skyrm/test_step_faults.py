"""A step that cannot go on (issue 22): a NaN reward (injected into one pair) or an infinite loss (a margin beyond
float32 in the data) stops the run at that step, before the optimiser applies it, naming the step and the input
rows; --skip-nonfinite skips and counts such steps; the export refuses NaN weights; out of memory names the knobs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")
safetensors = pytest.importorskip("safetensors.torch")
from skyrm import trainer  # noqa: E402
from skyrm.batching import step_plan  # noqa: E402
from skyrm.distributed import start, stop  # noqa: E402
from skyrm.export import export_model  # noqa: E402
from skyrm.faults import StepError, oom_message  # noqa: E402
from skyrm.train import main  # noqa: E402

from tests.skyrm.test_trainer import metrics, write_task  # noqa: E402
from tests.skyrm.test_training_faults import tiny  # noqa: E402

PAIRS, STEPS = 16, 4
PLAN = step_plan(PAIRS, 8, 1.0, 0, max_steps=STEPS)
POISONED = PLAN[1][0]  # first in step 2 (steps of one epoch do not share pairs)
HIT = [i + 1 for i, step in enumerate(PLAN) if POISONED in step]


def args(tmp_path: Path, *extra: str) -> list[str]:
    return ["--preset", "tiny", "--data", str(tmp_path / "train.parquet"), "--output-dir", str(tmp_path / "run"),
            "--batch-pairs", "8", "--micro-batch-tokens", "512", "--max-length", "128", "--max-steps", str(STEPS),
            "--checkpoint-every", "1", "--report-to", "none", *extra]  # fmt: skip


@pytest.fixture
def nan_reward(monkeypatch):
    """The chosen reward of pair POISONED made NaN, so that its gradient is NaN too."""
    real = trainer._pair_rewards

    def poisoned(model, batch):
        chosen, rejected = real(model, batch)
        scale = torch.tensor([math.nan if p == POISONED else 1.0 for p in batch.pair_ids])
        return chosen * scale, rejected

    monkeypatch.setattr(trainer, "_pair_rewards", poisoned)


def test_a_nan_reward_stops_the_run_at_its_step_naming_the_rows(tmp_path, nan_reward, capsys):
    write_task(tmp_path / "train.parquet", PAIRS, 0)
    assert main(args(tmp_path)) == 1
    err = capsys.readouterr().err.strip()
    rows = ", ".join(str(r) for r in sorted(PLAN[1]))
    assert err == (f"error: step 2: loss nan, gradient norm nan (rewards not finite for input row(s) {POISONED}; the "
                   f"step's pairs are input rows {rows}): stopped before applying it (the checkpoints hold the steps "
                   "before; --skip-nonfinite skips such steps)")  # fmt: skip
    out = tmp_path / "run"
    assert not (out / "model").exists() and not (out / "summary.json").exists()  # nothing exported
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000001"]
    assert [r["step"] for r in metrics(out)] == [1]


def test_skip_nonfinite_skips_and_counts_the_steps(tmp_path, nan_reward):
    write_task(tmp_path / "train.parquet", PAIRS, 0)
    summary = trainer.train(tiny(tmp_path, max_steps=STEPS, checkpoint_every=1, skip_nonfinite=True),
                            log=lambda _: None)  # fmt: skip
    assert summary["skipped_steps"] == HIT and HIT[0] == 2
    records = metrics(tmp_path / "run")
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    for r in records:
        assert r.get("skipped", False) == (r["step"] in HIT)
        assert (r["loss"] is None) == (r["step"] in HIT) and r["skipped_steps"] == sum(s <= r["step"] for s in HIT)
    weights = safetensors.load_file(tmp_path / "run" / "model" / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
    marker = json.loads((tmp_path / "run" / "checkpoints" / f"step-{STEPS:08d}" / "trainer.json").read_text())
    assert marker["state"] == {"skipped": HIT}  # a resumed run goes on counting


def test_an_overflowing_margin_in_the_data_stops_the_run(tmp_path, capsys):
    """A margin beyond float32 (finite when read, infinite in the loss) stops the run at the step of its row."""
    write_task(tmp_path / "plain.parquet", PAIRS, 0)
    table = pq.read_table(tmp_path / "plain.parquet")
    margins = [1.0] * PAIRS
    margins[POISONED] = 1e300
    pq.write_table(table.append_column("margin", pa.array(margins)), tmp_path / "train.parquet")
    assert main(args(tmp_path)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: step 2: loss inf, gradient norm ") and "(the rewards were finite; " in err
    assert f"input rows {', '.join(str(r) for r in sorted(PLAN[1]))})" in err


def test_the_export_refuses_nan_weights(tmp_path):
    from skyrm.trainer import build_model

    config = tiny(tmp_path)
    model, tokenizer = build_model(config)
    with torch.no_grad():
        model.score.weight[0, 0] = math.nan
    runtime = start()
    try:
        with pytest.raises(StepError, match=r"^the trained weights hold NaN or infinite values \(score.weight\): "
                                            r"nothing exported$"):  # fmt: skip
            export_model(model, tokenizer, tmp_path / "model", runtime, config, {}, None)
    finally:
        stop(runtime)
    assert not (tmp_path / "model").exists()


def test_out_of_memory_names_the_knobs_and_their_values(tmp_path, monkeypatch, capsys):
    def no_memory(model, batch):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.10 GiB total)")

    monkeypatch.setattr(trainer, "_pair_rewards", no_memory)
    write_task(tmp_path / "train.parquet", PAIRS, 0)
    assert main(args(tmp_path)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: out of memory on cpu at step 1 (a micro-batch of ") and "\n" not in err
    assert "lower --micro-batch-tokens (now 512; at least 2 x --max-length 128)" in err
    assert "turn on --activation-checkpointing (now off)" in err
    assert not (tmp_path / "run").exists()  # failed before its first checkpoint: nothing left
    monkeypatch.setattr(trainer, "build_model", no_memory)
    assert main(args(tmp_path)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: out of memory on cpu outside the training steps (building the model, an evaluation "
                          "or the export): lower --micro-batch-tokens (now 512; ")  # fmt: skip
    saving = oom_message(3, 1000, torch.device("cuda", 0), tiny(tmp_path, activation_checkpointing=True,
                                                                  grad_sync="step", lora_r=8))  # fmt: skip
    assert "--activation-checkpointing" not in saving and "--grad-sync micro-batch (now step" in saving
    assert "--lora-r" not in saving and saving.startswith("out of memory on cuda:0 at step 3 (a micro-batch of 1,000")
