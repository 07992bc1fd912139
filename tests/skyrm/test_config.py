"""Training configuration: presets, files, command-line overrides and clear errors."""

from __future__ import annotations

import re
from dataclasses import fields

import pytest
from skyrm.config import FIELD_HELP, PEER_NAMES, PRESETS, ConfigError, TrainConfig, load_config, parse_args


def test_paper_presets():
    llama = load_config(preset="skywork-llama-3.1-8b")
    gemma = load_config(preset="skywork-gemma-2-27b")
    assert (llama.batch_pairs, llama.lr, llama.epochs, llama.schedule) == (128, 2e-6, 2.0, "cosine")
    assert llama.dtype == "bf16"
    assert (gemma.lr, gemma.attn_implementation) == (1e-6, "eager")
    assert load_config(preset="tiny").model == "tiny" and set(PRESETS) >= {"tiny"}


def test_precedence_preset_then_file_then_command_line(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('preset = "skywork-llama-3.1-8b"\nlr = 1e-5\nloss = "focal"\ngamma = 1\nmax_steps = 100\n')
    config = parse_args(["--config", str(path), "--max-steps", "7", "--data", "pairs.parquet", "--no-packing"])
    assert (config.lr, config.loss, config.gamma, config.max_steps) == (1e-5, "focal", 1.0, 7)
    assert config.data == "pairs.parquet" and config.packing is False and config.batch_pairs == 128
    assert config.loss_config().gamma == 1.0


def test_yaml_files(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "run.yaml"
    path.write_text("preset: tiny\nmodel: tiny\nmax_steps: 3\nresume: true\n")
    config = load_config(path)
    assert config.max_steps == 3 and config.resume is True and config.lr == PRESETS["tiny"]["lr"]
    path.write_text("lr: 1e-5\nwarmup_ratio: 5E-2\n")  # YAML 1.2's floats (PyYAML read them as strings)
    assert (load_config(path).lr, load_config(path).warmup_ratio) == (1e-5, 0.05)
    path.write_text('lr: "1e-5"\n')  # a quoted string stays one
    with pytest.raises(ConfigError, match="lr must be float, got str '1e-5'"):
        load_config(path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("learning_rate = 1e-5\n", "unknown field 'learning_rate' (here: lr)"),
        ("max_step = 1\n", "unknown field 'max_step' (did you mean max_steps?)"),
        ('lr = "fast"\n', "lr must be float"),
        ('loss = "nope"\n', "loss: must be one of"),
        ('schedule = "step"\n', "schedule: must be one of"),
        ("packing = 1\n", "packing must be bool"),
        ('preset = "huge"\n', "unknown preset 'huge'"),
        ("temperature = 0\n", "run.toml: temperature: must be positive"),
        ("batch_pairs = 0\n", "run.toml: batch_pairs: must be positive, got 0"),
        ("lr = [\n", "run.toml"),
    ],
)
def test_mistakes_are_named(tmp_path, text, message):
    path = tmp_path / "run.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"batch_pairs": 0}, "batch_pairs: must be positive, got 0"),
        ({"micro_batch_tokens": 10}, "micro_batch_tokens: must hold one pair"),
        ({"loss": "bt-temperature", "temperature": 0.0}, "temperature: must be positive, got 0.0"),
        ({"loss": "tempered-log", "t": 1.0}, "t: must not be 1"),
    ],
)
def test_mistakes_name_the_flag_typed_or_the_field_passed(overrides, message):
    flags = [str(part) for name, value in overrides.items() for part in (f"--{name.replace('_', '-')}", value)]
    field, rest = message.split(":", 1)
    with pytest.raises(ConfigError, match="^" + re.escape(f"--{field.replace('_', '-')}:{rest}")):
        parse_args(["--data", "d", "--output-dir", "o", *flags])
    with pytest.raises(ConfigError, match="^" + re.escape(message)):  # a Python caller: the field it passed
        load_config(overrides=overrides)


def test_the_fixed_flag_names_exist():
    config = parse_args(["--model", "tiny", "--data", "d", "--eval-data", "e", "--output-dir", "o", "--max-steps", "2",
                         "--loss", "hinge", "--resume"])  # fmt: skip
    assert (config.eval_data, config.output_dir, config.loss, config.resume) == ("e", "o", "hinge", True)
    assert TrainConfig().loss == "bt"


def test_every_field_has_help_and_every_peer_name_a_field():
    names = [f.name for f in fields(TrainConfig)]
    assert [n for n in names if not FIELD_HELP.get(n)] == []
    assert {field for field, _ in PEER_NAMES.values()} <= set(names) and not set(PEER_NAMES) & set(names)


def test_trl_and_openrlhf_flags_name_ours(capsys):
    """A TRL or OpenRLHF user's flags are refused with the flag to use instead, in one error line."""
    with pytest.raises(SystemExit) as stop:
        parse_args(["--learning_rate", "1e-5", "--num_train_epochs=1", "--output_dir", "o", "--max_len", "512",
                    "--max_stepz", "2", "--nonsense"])  # fmt: skip
    assert stop.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == (
        "python -m skyrm.train: error: unrecognized arguments: --learning_rate (here: --lr), --num_train_epochs=1 "
        "(here: --epochs), --output_dir (here: --output-dir), --max_len (here: --max-length, tokens per side of a "
        "pair), --max_stepz (did you mean --max-steps?), --nonsense"
    )


def test_skyrm_imports_without_the_rust_extension_or_polars():
    import subprocess
    import sys

    blocked = "".join(f"sys.modules[{name!r}] = None; " for name in ("polars", "skyfilter", "skyfilter._core"))
    code = f"import sys; {blocked}\nimport skyrm, skyrm.train, skyrm.trainer, skyrm.checkpoint, skyrm.telemetry"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_python_overrides_take_paths_and_are_named_as_such(tmp_path):
    """``load_config(overrides=...)`` takes pathlib paths for the path fields; its errors name the overrides (the
    command line's name them the command line)."""
    config = load_config(overrides={"data": tmp_path / "pairs.jsonl", "output_dir": tmp_path / "run"})
    assert (config.data, config.output_dir) == (str(tmp_path / "pairs.jsonl"), str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="^overrides: unknown field 'learning_rate' \\(here: lr\\)"):
        load_config(overrides={"learning_rate": 1e-5})
