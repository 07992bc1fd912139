"""Fixtures of the skyrm tests: a tiny random-init reward model saved to a folder, as a training run exports one."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    pytest.importorskip("torch")
    from skyrm.config import load_config
    from skyrm.trainer import build_model

    model, tokenizer = build_model(load_config(preset="tiny"))
    folder = tmp_path_factory.mktemp("tiny-rm")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
