"""Fixtures of the skyrm tests: a tiny random-init reward model saved to a folder, as a training run exports one; a
tokenisation cache of the session's own (the user's ~/.cache is left alone)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _own_token_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SKYRM_CACHE", str(tmp_path_factory.mktemp("skyrm-cache")))
        yield


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
