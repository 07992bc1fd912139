"""Training faults of issue 17: truncation keeps the reward token, --max-steps wins over the epochs, the resume
fingerprint covers the data and the trajectory settings, precise focal losses, margins only where a loss uses them
(and per pair from a ``margin`` column), help for every flag, progress lines, and a warning when many pairs drop."""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from skyrm.batching import micro_batches, step_plan  # noqa: E402
from skyrm.config import ConfigError, TrainConfig, build_parser, load_config, parse_args  # noqa: E402
from skyrm.data import chat_encoder, drop_warning, encode_pairs  # noqa: E402
from skyrm.losses import LossConfig, pair_losses  # noqa: E402
from skyrm.model import tiny_tokenizer  # noqa: E402
from skyrm.telemetry import Progress  # noqa: E402
from skyrm.train import main  # noqa: E402
from skyrm.trainer import train  # noqa: E402

from tests.skyrm.test_trainer import metrics, write_task  # noqa: E402


def tiny(tmp_path, name: str = "run", **overrides):
    values = {"data": str(tmp_path / "train.parquet"), "output_dir": str(tmp_path / name), "batch_pairs": 8,
              "micro_batch_tokens": 512, "max_length": 128, "report_to": "none"} | overrides  # fmt: skip
    return load_config(preset="tiny", overrides=values)


# truncation


def test_truncation_keeps_the_bos_and_the_last_tokens_where_the_reward_is_read():
    tokenizer = tiny_tokenizer()
    table = pa.table({"prompt": ["p" * 100], "chosen": ["good answer"], "rejected": ["bad answer!"]})
    full = chat_encoder(tokenizer)([{"role": "user", "content": "p" * 100},
                                    {"role": "assistant", "content": "good answer"}])  # fmt: skip
    cut = encode_pairs(table, tokenizer, 40, "truncate")
    assert cut.rows == [0], "a long prompt must not make the two sides identical"
    chosen = cut.chosen[0]
    assert len(chosen) == 40 and chosen[0] == tokenizer.bos_token_id
    assert chosen[1:] == full[-39:]  # the answer and the template's final token, where the reward is read
    assert chosen[-1] == full[-1] and tokenizer.decode(chosen).endswith("good answer</s>\n")


def test_truncation_without_a_bos_keeps_the_last_tokens():
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = tokenizer.chat_template.replace("{{ bos_token }}", "")
    tokenizer.bos_token = None
    table = pa.table({"prompt": ["p" * 100], "chosen": ["yes"], "rejected": ["no"]})
    full = chat_encoder(tokenizer)([{"role": "user", "content": "p" * 100}, {"role": "assistant", "content": "yes"}])
    assert encode_pairs(table, tokenizer, 30, "truncate").chosen[0] == full[-30:]


# --max-steps


def test_max_steps_wins_over_the_epochs():
    plan = step_plan(48, 8, 1.0, 0, max_steps=10)  # 6 steps an epoch
    assert len(plan) == 10 and plan[:6] == step_plan(48, 8, 1.0, 0)
    assert len(step_plan(48, 8, 5.0, 0, max_steps=2)) == 2


@pytest.fixture(scope="module")
def run_with_drops(tmp_path_factory):
    """10 steps asked on 48 pairs (6 steps an epoch); a held-out file where 5 of 20 pairs are too long."""
    folder = tmp_path_factory.mktemp("faults")
    write_task(folder / "train.parquet", 48, 0)
    rows = pq.read_table(folder / "train.parquet").to_pylist()[:15]
    rows += [{"prompt": "x" * 200, "chosen": "yes", "rejected": "no"}] * 5
    pq.write_table(pa.Table.from_pylist(rows), folder / "test.parquet")
    lines: list[str] = []
    config = tiny(folder, max_steps=10, epochs=1.0, eval_data=str(folder / "test.parquet"))
    summary = train(config, log=lines.append)
    return config, summary, lines


def test_the_run_trains_the_steps_asked(run_with_drops):
    config, summary, lines = run_with_drops
    assert summary["steps"] == 10 and [r["step"] for r in metrics(config.output_dir)] == list(range(1, 11))
    assert any(line.startswith("plan: 10 steps") for line in lines)


def test_progress_is_one_plain_line_per_step_off_a_terminal(run_with_drops):
    _, _, lines = run_with_drops
    steps = [line for line in lines if line.startswith("step ")]
    assert [line.split()[1] for line in steps] == [f"{i}/10" for i in range(1, 11)]
    assert all("loss" in line and "tok/s" in line and "ETA" in line for line in steps)


def test_the_progress_bar_on_a_terminal(capsys):
    lines: list[str] = []
    progress = Progress(3, 0, lines.append, terminal=True)
    record = {"step": 1, "loss": 0.5, "accuracy": 1.0, "lr": 1e-3, "tokens_per_s": 100.0, "mfu": None}
    for step in (1, 2, 3):
        progress.update(record | {"step": step})
    progress.close()
    assert lines == [] and "3/3" in capsys.readouterr().err  # the bar, not lines


def test_held_out_accuracy_says_how_many_pairs_it_scored(run_with_drops):
    _, summary, lines = run_with_drops
    assert summary["eval"]["pairs"] == 15 and summary["eval"]["pairs_read"] == 20
    assert any(line.startswith("held-out accuracy") and "on 15 of 20 pairs" in line for line in lines)


def test_a_run_that_drops_many_pairs_says_why_and_which_flag(run_with_drops):
    config, _, lines = run_with_drops
    warnings = [line for line in lines if line.startswith("warning:") and "dropped" in line]
    assert len(warnings) == 1, lines
    assert config.eval_data in warnings[0] and "5 of 20 pairs dropped" in warnings[0]
    assert "too_long" in warnings[0] and "--max-length" in warnings[0] and "--truncation" in warnings[0]


def test_no_warning_at_a_tenth_or_less():
    tokenizer = tiny_tokenizer()
    rows = [{"prompt": "hi", "chosen": "yes", "rejected": "no"}] * 9 + [{"prompt": "x" * 99, "chosen": "a",
                                                                        "rejected": "b"}]  # fmt: skip
    assert drop_warning(encode_pairs(pa.Table.from_pylist(rows), tokenizer, 64), "f") is None
    many = encode_pairs(pa.Table.from_pylist(rows[-2:]), tokenizer, 64)
    assert drop_warning(many, "f") == (
        "warning: f: 1 of 2 pairs dropped (50%): 1 too_long (raise --max-length or use --truncation truncate)"
    )


# resume fingerprint


def test_resume_refuses_changed_data_or_settings_naming_what_changed(tmp_path, capsys):
    write_task(tmp_path / "train.parquet", 16, 0)
    train(tiny(tmp_path, max_steps=2, checkpoint_every=1), log=lambda _: None)
    capsys.readouterr()
    base = ["--preset", "tiny", "--output-dir", str(tmp_path / "run"), "--batch-pairs", "8", "--max-length", "128",
            "--micro-batch-tokens", "512", "--max-steps", "2", "--report-to", "none", "--resume"]  # fmt: skip
    assert main([*base, "--data", str(tmp_path / "train.parquet"), "--lr", "0.5"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lr: 0.001 then, 0.5 now" in err, err
    write_task(tmp_path / "other.parquet", 16, 7)  # the same number of pairs, other pairs
    assert main([*base, "--data", str(tmp_path / "other.parquet")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "data_hash" in err and "lr" not in err


# losses


@pytest.mark.parametrize("name", ["focal", "focal-penalty"])
@pytest.mark.parametrize(("d", "gamma"), [(20.0, 2.0), (25.0, 2.0), (40.0, 1.0)])
def test_focal_losses_keep_their_precision_at_large_margins(name, d, gamma):
    """1 - s(d) rounds to 0 in float32 past d ~ 17: the loss (e^-(gamma+1)d, still a float32) and its push vanished."""

    def reference(x: float) -> float:  # float64, with 1 - s(x) written as s(-x)
        weight = 1 / (1 + math.exp(x)) if name == "focal" else min(1.0, 2 / (1 + math.exp(x)))
        return weight**gamma * math.log1p(math.exp(-x))

    config = LossConfig(name, gamma=gamma)
    assert pair_losses(torch.tensor([d]), torch.tensor([0.0]), config).item() == pytest.approx(
        reference(d), rel=1e-5, abs=0
    )
    chosen = torch.tensor([d], requires_grad=True)
    pair_losses(chosen, torch.tensor([0.0]), config).sum().backward()
    assert chosen.grad.item() < 0  # still pushes the margin up, however little


def test_tempered_log_keeps_its_precision_at_large_margins():
    loss = pair_losses(torch.tensor([30.0]), torch.tensor([0.0]), LossConfig("tempered-log", t=0.5)).item()
    assert loss == pytest.approx(math.exp(-30.0), rel=1e-4, abs=0)  # -(s(d)^0.5 - 1) / 0.5 ~ exp(-d) for large d


@pytest.mark.parametrize("loss", ["bt-temperature", "focal", "focal-penalty", "tempered-log", "pointwise-ce"])
def test_a_margin_for_a_loss_that_ignores_it_is_refused(loss, capsys):
    with pytest.raises(ConfigError, match=f"loss: {loss} ignores the margin"):
        load_config(overrides={"loss": loss, "margin": 1.0})
    assert main(["--loss", loss, "--margin", "1", "--data", "x.parquet"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_per_pair_margins_replace_the_configured_one():
    chosen, rejected = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0])
    margins = torch.tensor([0.5, 3.0])
    for name in ("bt", "hinge", "margin-mse"):
        each = pair_losses(chosen, rejected, LossConfig(name), margins)
        one = [pair_losses(chosen[i : i + 1], rejected[i : i + 1], LossConfig(name, margin=m)).item()
               for i, m in enumerate((0.5, 3.0))]  # fmt: skip
        assert each.tolist() == pytest.approx(one)
    with pytest.raises(ValueError, match="focal ignores the margin"):
        pair_losses(chosen, rejected, LossConfig("focal"), margins)


def test_micro_batches_name_their_pairs_in_reward_order():
    chosen = [[1] * n for n in (5, 2, 9, 3)]
    batches = micro_batches(chosen, chosen, [0, 1, 2, 3], 20, 0, packing=False, by_length=True)
    assert [p for b in batches for p in b.pair_ids] == [1, 3, 0, 2]
    assert all(len(b.pair_ids) == b.pairs for b in batches)


def test_a_margin_column_trains_as_the_same_margin_given_once(tmp_path):
    write_task(tmp_path / "plain.parquet", 16, 0)
    table = pq.read_table(tmp_path / "plain.parquet")
    pq.write_table(table.append_column("margin", pa.array([4.0] * table.num_rows)), tmp_path / "train.parquet")
    train(tiny(tmp_path, "column", max_steps=2), log=lambda _: None)
    train(tiny(tmp_path, "flag", max_steps=2, data=str(tmp_path / "plain.parquet"), margin=4.0), log=lambda _: None)
    train(tiny(tmp_path, "none", max_steps=2, data=str(tmp_path / "plain.parquet")), log=lambda _: None)
    column, flag, none = ([r["loss"] for r in metrics(tmp_path / n)] for n in ("column", "flag", "none"))
    assert column == pytest.approx(flag, rel=1e-6) and column[0] > none[0] + 1


def test_a_bad_margin_value_is_one_line_naming_file_row_and_column(tmp_path, capsys):
    write_task(tmp_path / "plain.parquet", 16, 0)
    table = pq.read_table(tmp_path / "plain.parquet")
    values = [1.0] * table.num_rows
    values[3] = None
    pq.write_table(table.append_column("margin", pa.array(values)), tmp_path / "train.parquet")
    args = ["--preset", "tiny", "--data", str(tmp_path / "train.parquet"), "--output-dir", str(tmp_path / "run")]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path / 'train.parquet'}: row 3, column margin: expected a finite number, found None"


def test_a_margin_column_and_margin_flag_together_are_refused(tmp_path, capsys):
    write_task(tmp_path / "plain.parquet", 16, 0)
    table = pq.read_table(tmp_path / "plain.parquet")
    pq.write_table(table.append_column("margin", pa.array([1.0] * table.num_rows)), tmp_path / "train.parquet")
    assert main(["--preset", "tiny", "--data", str(tmp_path / "train.parquet"), "--margin", "2",
                 "--output-dir", str(tmp_path / "run")]) == 1  # fmt: skip
    assert "margin column and --margin 2.0" in capsys.readouterr().err


# --help


def test_every_flag_has_a_description_with_its_default_and_choices(capsys):
    parser = build_parser()
    flags = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert {a.dest for a in flags} == {f.name for f in fields(TrainConfig)} | {"config", "preset"}
    for action in flags:
        assert action.help and "default" in action.help, action.option_strings
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--loss LOSS the pairwise loss" in text and "one of bt, bt-temperature, focal" in text
    assert "one of drop, truncate (default: drop)" in text


def test_summary_json_records_the_held_out_count(run_with_drops):
    config, _, _ = run_with_drops
    summary = json.loads((Path(config.output_dir) / "summary.json").read_text(encoding="utf-8"))
    assert summary["eval"]["pairs"] == 15 and summary["eval"]["pairs_read"] == 20
