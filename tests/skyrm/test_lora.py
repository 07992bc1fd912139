"""LoRA runs (peft) on the tiny model: only the adapters and the score head train, the adapter export and the merged
export give the same rewards (in plain Hugging Face for the merged one), two processes train what one does, and a
LoRA run resumes exactly from its checkpoint."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
safetensors = pytest.importorskip("safetensors.torch")
from skyrm.batching import micro_batches  # noqa: E402
from skyrm.checkpoint import CheckpointError  # noqa: E402
from skyrm.config import ConfigError, load_config  # noqa: E402
from skyrm.data import encode_pairs, read_pairs  # noqa: E402
from skyrm.model import rewards  # noqa: E402
from skyrm.trainer import build_model, train  # noqa: E402

from tests.skyrm.test_distributed import flags, run  # noqa: E402
from tests.skyrm.test_trainer import metrics, write_task  # noqa: E402

LORA = {"lora_r": 4, "lora_alpha": 8.0}


def lora_run(folder: Path, name: str, **extra):
    return load_config(preset="tiny", overrides={
        "data": str(folder / "train.parquet"), "eval_data": str(folder / "test.parquet"),
        "output_dir": str(folder / name), "max_steps": 12, "batch_pairs": 8, "micro_batch_tokens": 512,
        "max_length": 128, "lr": 1e-2, "warmup_ratio": 0.0, "report_to": "none", **LORA, **extra,
    })  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same LoRA run exported merged and as adapters."""
    folder = tmp_path_factory.mktemp("lora")
    write_task(folder / "train.parquet", 96, 0)
    write_task(folder / "test.parquet", 16, 1)
    merged, adapters = lora_run(folder, "merged", merge_lora=True), lora_run(folder, "adapters")
    return folder, merged, train(merged, log=lambda _: None), adapters, train(adapters, log=lambda _: None)


def scores(model, tokenizer, parquet: Path) -> torch.Tensor:
    """Hugging Face's (or peft's) own forward over the pairs of ``parquet`` (chosen, rejected, ...), one padded
    batch; skyrm's readout of the same model agrees."""
    encoded = encode_pairs(read_pairs(str(parquet)), tokenizer, 128)
    (batch,) = micro_batches(encoded.chosen, encoded.rejected, list(range(len(encoded))), 10**6,
                             tokenizer.pad_token_id, packing=False)  # fmt: skip
    with torch.no_grad():
        plain = model.get_base_model() if isinstance(model, peft.PeftModel) else model
        ours = rewards(plain, batch.input_ids, batch.attention_mask)
        hf = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, 0]
    torch.testing.assert_close(ours, hf, rtol=0, atol=1e-5)
    return hf


def test_only_the_adapters_and_the_score_head_train(runs):
    folder, merged, summary, _, _ = runs
    model, _ = build_model(merged)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("score.") for n in trainable)
    assert "score.modules_to_save.default.weight" in trainable
    assert any(".mlp.down_proj." in n for n in trainable) and any(".self_attn.q_proj." in n for n in trainable)
    assert sum(p.numel() for n, p in model.named_parameters() if n in trainable) < 0.2 * sum(
        p.numel() for p in model.parameters()
    )
    # the merged export: the embeddings (no adapter) as initialised, adapted layers and the head changed
    before, _ = build_model(load_config(preset="tiny"))
    after = safetensors.load_file(folder / "merged" / "model" / "model.safetensors")
    assert not any("lora" in k or "modules_to_save" in k for k in after)
    init = before.state_dict()
    assert torch.equal(after["model.embed_tokens.weight"], init["model.embed_tokens.weight"])
    q_proj = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(after[q_proj], init[q_proj])
    assert not torch.equal(after["score.weight"], init["score.weight"])
    losses = [r["loss"] for r in metrics(merged.output_dir)]
    assert sum(losses[-3:]) < 0.7 * sum(losses[:3]) and summary["eval"]["accuracy"] > 0.8


def test_the_merged_model_scores_as_the_adapter_model(runs):
    folder, merged, summary, adapters, adapter_summary = runs
    assert summary["eval"] == adapter_summary["eval"]  # the same run
    plain = transformers.AutoModelForSequenceClassification.from_pretrained(folder / "merged" / "model").eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder / "merged" / "model")
    held_out = scores(plain, tokenizer, folder / "test.parquet")
    # the held-out rewards measured in training are those of the merged model in plain Hugging Face
    assert held_out.mean().item() == pytest.approx(summary["eval"]["reward_mean"], abs=1e-5)
    assert held_out.std().item() == pytest.approx(summary["eval"]["reward_std"], abs=1e-5)
    # the adapter export: peft's files, a few kB, over the base model as skyrm builds it
    out = folder / "adapters" / "model"
    assert (out / "adapter_config.json").exists() and not (out / "model.safetensors").exists()
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4
    base, _ = build_model(load_config(preset="tiny"))
    with_adapters = peft.PeftModel.from_pretrained(base, out).eval()
    torch.testing.assert_close(scores(with_adapters, tokenizer, folder / "test.parquet"), held_out, rtol=0, atol=1e-5)


def test_lora_without_peft_names_the_pip_command(monkeypatch):
    from skyrm.requires import MissingDependency

    monkeypatch.setitem(sys.modules, "peft", None)  # an import of peft fails
    with pytest.raises(MissingDependency, match=r"^--lora-r needs the `peft` package, .*: pip install peft$"):
        build_model(load_config(preset="tiny", overrides=LORA))


def test_lora_settings_are_checked():
    with pytest.raises(ConfigError, match="merge_lora: merges LoRA adapters"):
        load_config(preset="tiny", overrides={"merge_lora": True})
    with pytest.raises(ConfigError, match="lora_dropout"):
        load_config(preset="tiny", overrides={"lora_r": 4, "lora_dropout": 1.0})
    with pytest.raises(ValueError, match="^--lora-target-modules nope: "):
        build_model(load_config(preset="tiny", overrides={"lora_r": 4, "lora_target_modules": "nope"}))
    model, _ = build_model(load_config(preset="tiny", overrides={"lora_r": 4, "lora_target_modules": "q_proj, v_proj"}))
    adapted = {n.split(".")[-4] for n, _ in model.named_parameters() if "lora_A" in n}
    assert adapted == {"q_proj", "v_proj"}


def test_two_processes_train_the_lora_run_one_does(tmp_path):
    write_task(tmp_path / "train.parquet", 64, 2)
    steps = {"max-steps": 4, "lora-r": 4, "merge-lora": "", "micro-batch-tokens": 256}
    from skyrm.train import main  # one process: this one (the two below compare within a tolerance)

    assert main(flags(tmp_path / "train.parquet", tmp_path / "one", **steps)) == 0
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "skyrm.train",
         *flags(tmp_path / "train.parquet", tmp_path / "two", **steps)])  # fmt: skip
    one, two = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], rel=1e-5)
    a = safetensors.load_file(tmp_path / "one" / "model" / "model.safetensors")
    b = safetensors.load_file(tmp_path / "two" / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5, msg=name)


def test_a_lora_run_resumes_exactly(tmp_path):
    write_task(tmp_path / "train.parquet", 64, 3)
    write_task(tmp_path / "test.parquet", 8, 4)
    whole = lora_run(tmp_path, "whole", max_steps=6, checkpoint_every=3, merge_lora=True)
    train(whole, log=lambda _: None)
    # the run as it was after its checkpoint at step 3: resumed, it ends with the same weights
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "whole", cut)
    for path in ("checkpoints/step-00000006", "model", "summary.json"):
        shutil.rmtree(cut / path) if (cut / path).is_dir() else (cut / path).unlink()
    resumed = lora_run(tmp_path, "cut", max_steps=6, checkpoint_every=3, merge_lora=True, resume=True)
    with pytest.raises(CheckpointError, match="lora_r: 4 then, 8 now"):  # LoRA settings are the run's
        train(lora_run(tmp_path, "cut", max_steps=6, checkpoint_every=3, resume=True, lora_r=8), log=lambda _: None)
    train(resumed, log=lambda _: None)
    a = safetensors.load_file(tmp_path / "whole" / "model" / "model.safetensors")
    b = safetensors.load_file(cut / "model" / "model.safetensors")
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert [r["loss"] for r in metrics(cut)] == [r["loss"] for r in metrics(tmp_path / "whole")]


def test_lora_losses_do_not_depend_on_activation_checkpointing(tmp_path):
    write_task(tmp_path / "train.parquet", 32, 5)
    write_task(tmp_path / "test.parquet", 4, 6)
    for name, checkpointing in (("plain", False), ("checkpointed", True)):
        train(lora_run(tmp_path, name, max_steps=3, activation_checkpointing=checkpointing), log=lambda _: None)
    plain, checkpointed = metrics(tmp_path / "plain"), metrics(tmp_path / "checkpointed")
    assert [r["loss"] for r in checkpointed] == pytest.approx([r["loss"] for r in plain], rel=1e-5)
    assert plain[-1]["loss"] != plain[0]["loss"]
