"""Parity with TRL's RewardTrainer (a test-only dependency): the same token ids for the same pairs, and the same
Bradley-Terry loss and accuracy for the same weights and batch."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

from skyrm.batching import micro_batches  # noqa: E402
from skyrm.data import conversations, encode_pairs, read_pairs  # noqa: E402
from skyrm.losses import pair_losses, pair_metrics  # noqa: E402
from skyrm.model import rewards, tiny_config, tiny_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def setup(shared_data, tmp_path_factory):
    table = read_pairs(str(shared_data / "prefs/ultrafeedback_binarized_1200/train_clean.jsonl")).slice(0, 12)
    chosen, rejected = conversations(table)
    dataset = datasets.Dataset.from_dict({"chosen": chosen, "rejected": rejected})
    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    model = transformers.LlamaForSequenceClassification(tiny_config(pad_token_id=tokenizer.pad_token_id))
    args = trl.RewardConfig(output_dir=str(tmp_path_factory.mktemp("trl")), report_to=[], use_cpu=True,
                            max_length=None, per_device_train_batch_size=4)  # fmt: skip
    trainer = trl.RewardTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    return table, tokenizer, model, trainer


def test_same_token_ids_as_trl(setup):
    table, tokenizer, _, trainer = setup
    ours = encode_pairs(table, tokenizer, 1_000_000)
    theirs = trainer.train_dataset
    assert len(ours) == len(theirs) == 12
    assert list(ours.chosen) == theirs["chosen_ids"] and list(ours.rejected) == theirs["rejected_ids"]


def test_same_loss_and_accuracy_as_trl(setup):
    _, tokenizer, model, trainer = setup
    generator = torch.Generator().manual_seed(1)
    chosen = [torch.randint(6, 262, (n,), generator=generator).tolist() for n in (5, 9, 7, 3, 12, 6)]
    rejected = [torch.randint(6, 262, (n,), generator=generator).tolist() for n in (8, 4, 7, 6, 2, 11)]
    batch = micro_batches(chosen, rejected, list(range(6)), 4096, tokenizer.pad_token_id, packing=False)[0]
    order = list(range(0, 12, 2)) + list(range(1, 12, 2))  # TRL's layout: every chosen row, then every rejected
    model.train()
    inputs = {"input_ids": batch.input_ids[order], "attention_mask": batch.attention_mask[order]}
    loss = trainer.compute_loss(model, inputs)
    accuracy = trainer._metrics["train"]["accuracy"][-1]
    values = rewards(model, batch.input_ids, batch.attention_mask).view(-1, 2)
    torch.testing.assert_close(pair_losses(values[:, 0], values[:, 1]).mean(), loss, rtol=1e-6, atol=1e-7)
    assert pair_metrics(values[:, 0], values[:, 1])["correct"].item() / 6 == pytest.approx(accuracy)
