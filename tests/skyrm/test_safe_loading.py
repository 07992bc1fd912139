"""Loading only what the user asked for (issue 22): a model folder that ships Python code (auto_map) is refused in
one line by training, evaluation and serving unless --trust-remote-code is given (and with it the code does run);
a config is data (a YAML config that would construct a Python object is refused, and nothing runs). Recipes:
tests/skyfilter/test_recipe_paths.py."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from skyrm.config import ConfigError, load_config  # noqa: E402
from skyrm.eval.runner import load_model  # noqa: E402
from skyrm.requires import ModelLoadError  # noqa: E402

from tests.skyrm.test_trainer import write_task  # noqa: E402

CODE = """
import os
from pathlib import Path

Path(os.environ["SKYRM_TEST_RAN"]).write_text("ran")
"""


@pytest.fixture
def ran(tmp_path, monkeypatch) -> Path:
    """The file the model's code writes when it runs."""
    path = tmp_path / "ran"
    monkeypatch.setenv("SKYRM_TEST_RAN", str(path))
    return path


def with_code(model: Path, folder: Path, model_type: str = "custom-rm") -> Path:
    """A copy of the ``model`` folder whose config's auto_map points at the folder's own module ``custom.py``."""
    shutil.copytree(model, folder)
    config = json.loads((folder / "config.json").read_text())
    names = {"AutoConfig": "custom.CustomConfig", "AutoModelForSequenceClassification": "custom.CustomModel"}
    (folder / "config.json").write_text(json.dumps(config | {"model_type": model_type, "auto_map": names}))
    (folder / "custom.py").write_text(CODE)
    return folder


def refusal(folder: Path) -> str:
    return (f"{folder}: the model ships its own Python code (auto_map in its config), which runs only with "
            "--trust-remote-code: read that code first, then pass the flag")  # fmt: skip


def test_training_refuses_a_model_with_code(tiny_model_dir, tmp_path, ran, capsys):
    from skyrm.train import main

    folder = with_code(tiny_model_dir, tmp_path / "custom")
    write_task(tmp_path / "train.parquet", 16, 0)
    out = tmp_path / "run"
    assert main(["--model", str(folder), "--data", str(tmp_path / "train.parquet"), "--output-dir", str(out)]) == 1
    assert capsys.readouterr().err.strip() == f"error: {refusal(folder)}"
    assert not ran.exists() and not out.exists()


def test_evaluation_and_serving_refuse_a_model_with_code(tiny_model_dir, tmp_path, ran, capsys):
    from skyrm.eval.__main__ import main as evaluate

    folder = with_code(tiny_model_dir, tmp_path / "custom")
    with pytest.raises(ModelLoadError) as refused:
        load_model(str(folder))
    assert str(refused.value) == refusal(folder)
    capsys.readouterr()
    assert evaluate(["--model", str(folder), "--bench", "sample"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: {refusal(folder)}"  # after the no-GPU warning
    if all(__import__("importlib").util.find_spec(m) for m in ("fastapi", "uvicorn")):
        from skyrm.cli import main as skyrm

        assert skyrm(["serve", "--model", str(folder)]) == 1
        assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: {refusal(folder)}"
    assert not ran.exists()


def test_trust_remote_code_runs_the_models_code(tiny_model_dir, tmp_path, ran, monkeypatch):
    """The flag reaches transformers: the same folder's code runs (in a modules cache of the test's own)."""
    import transformers.dynamic_module_utils as modules

    monkeypatch.setattr(modules, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))  # transformers adds its cache to sys.path
    folder = with_code(tiny_model_dir, tmp_path / "custom")
    with pytest.raises(Exception):  # noqa: B017, PT011 - custom.py defines no model: any error after it ran
        load_model(str(folder), trust_remote_code=True)
    assert ran.read_text() == "ran"


def test_a_known_architecture_with_an_auto_map_loads_without_its_code(tiny_model_dir, tmp_path, ran):
    """A Llama config that also names code: transformers' own Llama is used, and the code never runs."""
    folder = with_code(tiny_model_dir, tmp_path / "llama", "llama")
    model, _ = load_model(str(folder))
    assert type(model).__name__ == "LlamaForSequenceClassification" and not ran.exists()


def test_a_yaml_config_cannot_construct_python_objects(tmp_path, ran):
    path = tmp_path / "config.yaml"
    path.write_text(f'lr: !!python/object/apply:os.system ["touch {ran}"]\n')
    pytest.importorskip("yaml")
    with pytest.raises(ConfigError, match=f"^{path}: not valid YAML: could not determine a constructor"):
        load_config(path)
    assert not ran.exists()


def test_scoring_refuses_a_model_with_code_unless_trusted(tiny_model_dir, tmp_path, ran, capsys, monkeypatch):
    import transformers.dynamic_module_utils as modules
    from skyrm.cli import main as skyrm

    folder = with_code(tiny_model_dir, tmp_path / "custom")
    write_task(tmp_path / "pairs.parquet", 8, 0)
    command = ["score", str(tmp_path / "pairs.parquet"), "--model", str(folder), "--out", str(tmp_path / "s.parquet")]
    assert skyrm(command) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: {refusal(folder)}"
    assert not ran.exists() and not (tmp_path / "s.parquet").exists()
    monkeypatch.setattr(modules, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    with pytest.raises(Exception):  # noqa: B017, PT011 - custom.py defines no model: any error after it ran
        skyrm([*command, "--trust-remote-code"])
    assert ran.read_text() == "ran"
