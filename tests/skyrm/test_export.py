"""The export (skyrm.export) on the tiny model: its dtype and shards, rewards normalised by the training rewards'
statistics as a plain Hugging Face load reads them, and the upload to the hub up to the call (no network here)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors = pytest.importorskip("safetensors.torch")
from skyrm.config import ConfigError, load_config  # noqa: E402
from skyrm.train import main  # noqa: E402
from skyrm.trainer import train  # noqa: E402

from tests.skyrm.test_lora import scores  # noqa: E402
from tests.skyrm.test_trainer import write_task  # noqa: E402


def run_config(folder: Path, name: str, **extra):
    return load_config(preset="tiny", overrides={
        "data": str(folder / "train.parquet"), "eval_data": str(folder / "test.parquet"),
        "output_dir": str(folder / name), "max_steps": 3, "batch_pairs": 8, "micro_batch_tokens": 512,
        "max_length": 128, "lr": 3e-3, "report_to": "none", **extra,
    })  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One run exported three ways: as trained (fp32, the tiny preset's dtype), in bf16 in small shards, and with
    normalised rewards."""
    folder = tmp_path_factory.mktemp("export")
    write_task(folder / "train.parquet", 32, 0)
    write_task(folder / "test.parquet", 8, 1)
    settings = {"plain": {}, "sharded": {"export_dtype": "bf16", "max_shard_size": "100KB"},
                "normalized": {"normalize_rewards": True}}  # fmt: skip
    return folder, {name: train(run_config(folder, name, **extra), log=lambda _: None) for name, extra in
                    settings.items()}  # fmt: skip


def load(folder: Path):
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder / "model").eval()
    return model, transformers.AutoTokenizer.from_pretrained(folder / "model")


def test_the_export_dtype_and_shards(runs):
    folder, _ = runs
    plain = safetensors.load_file(folder / "plain" / "model" / "model.safetensors")
    assert {t.dtype for t in plain.values()} == {torch.float32}  # the tiny preset's --dtype fp32
    shards = sorted((folder / "sharded" / "model").glob("model-*.safetensors"))
    index = json.loads((folder / "sharded" / "model" / "model.safetensors.index.json").read_text())
    assert len(shards) >= 2 and all(s.stat().st_size < 150_000 for s in shards)
    assert set(index["weight_map"]) == set(plain) and {s.name for s in shards} == set(index["weight_map"].values())
    sharded = {k: v for s in shards for k, v in safetensors.load_file(s).items()}
    assert {t.dtype for t in sharded.values()} == {torch.bfloat16}
    assert all(torch.equal(sharded[k], plain[k].to(torch.bfloat16)) for k in plain)
    model, tokenizer = load(folder / "sharded")
    full, _ = load(folder / "plain")
    torch.testing.assert_close(scores(model.float(), tokenizer, folder / "test.parquet"),
                               scores(full, tokenizer, folder / "test.parquet"), rtol=0.05, atol=0.05)  # fmt: skip


def test_plain_hugging_face_reads_normalised_rewards(runs):
    folder, summaries = runs
    model, tokenizer = load(folder / "normalized")
    raw, _ = load(folder / "plain")  # the same run, not normalised
    stats = summaries["normalized"]["train_rewards"]
    assert stats["pairs"] == 32 and stats["std"] > 0
    normalization = model.config.reward_normalization
    assert normalization["mean"] == stats["mean"] and normalization["std"] == stats["std"]
    assert normalization["offset"] == pytest.approx(stats["mean"] / stats["std"])  # Llama's head has no bias
    torch.testing.assert_close(model.score.weight, raw.score.weight / stats["std"])
    # on the training pairs: unit std, and zero mean once the recorded offset is taken off
    train_rewards = scores(model, tokenizer, folder / "train.parquet")
    assert train_rewards.std().item() == pytest.approx(1.0, abs=1e-4)
    assert (train_rewards - normalization["offset"]).mean().item() == pytest.approx(0.0, abs=1e-4)
    torch.testing.assert_close(train_rewards - normalization["offset"],
                               (scores(raw, tokenizer, folder / "train.parquet") - stats["mean"]) / stats["std"],
                               rtol=0, atol=1e-4)  # fmt: skip
    # the held-out statistics in the config are those of the exported head
    held_out = scores(model, tokenizer, folder / "test.parquet")
    assert model.config.reward_mean == pytest.approx(held_out.mean().item(), abs=1e-4)
    assert model.config.reward_std == pytest.approx(held_out.std().item(), abs=1e-4)
    assert raw.config.reward_mean == pytest.approx(summaries["normalized"]["eval"]["reward_mean"])


def test_export_settings_are_checked():
    for field, value, message in (
        ("export_dtype", "fp16", "export_dtype: must be one of bf16, fp32"),
        ("max_shard_size", "5", "max_shard_size: must be a size such as 5GB"),
        ("push_to_hub", "no-owner", "push_to_hub: must be a hub repository owner/name"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_config(preset="tiny", overrides={field: value})


def test_push_to_hub_uploads_the_exported_folder(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, *a, **k: calls.append(("create", a, k)))
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", lambda self, **k: calls.append(("upload", (), k))
                        or SimpleNamespace(commit_url="https://huggingface.co/me/rm/commit/1"))  # fmt: skip
    monkeypatch.setattr("skyshared.hub.hub_offline", lambda: False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: "hf_test")
    write_task(tmp_path / "train.parquet", 16, 2)
    write_task(tmp_path / "test.parquet", 4, 3)
    lines = []
    train(run_config(tmp_path, "run", max_steps=1, push_to_hub="me/rm"), log=lines.append)
    assert calls[0] == ("create", ("me/rm",), {"repo_type": "model", "private": True, "exist_ok": True})
    upload = calls[1][2]
    assert upload["repo_id"] == "me/rm" and Path(upload["folder_path"]) == tmp_path / "run" / "model"
    assert lines[-1] == f"uploaded {tmp_path / 'run' / 'model'} to https://huggingface.co/me/rm/commit/1"


def test_push_to_hub_offline_fails_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    write_task(tmp_path / "train.parquet", 16, 4)
    out = tmp_path / "run"
    code = main(["--preset", "tiny", "--data", str(tmp_path / "train.parquet"), "--output-dir", str(out),
                 "--push-to-hub", "me/rm"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and not out.exists()
    assert err.startswith("error: --push-to-hub me/rm: the Hugging Face hub cannot be reached")
