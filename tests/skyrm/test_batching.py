"""Steps and micro-batches: every pair once, budgets kept, and packed rewards equal to padded rewards."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from skyrm.batching import in_pair_order, micro_batches, step_plan  # noqa: E402
from skyrm.model import rewards, tiny_config  # noqa: E402


def test_step_plan_is_seeded_and_covers_each_epoch():
    plan = step_plan(103, 10, epochs=2.0, seed=3)
    assert len(plan) == 20 and all(len(step) == 10 for step in plan)
    first_epoch = [p for step in plan[:10] for p in step]
    assert len(set(first_epoch)) == 100  # one permutation; 3 pairs wait for the next epoch
    assert plan == step_plan(103, 10, epochs=2.0, seed=3) and plan != step_plan(103, 10, epochs=2.0, seed=4)
    assert plan[10:] != plan[:10]  # a new order each epoch
    assert len(step_plan(103, 10, epochs=0.5, seed=3)) == 5
    with pytest.raises(ValueError, match="fewer than one step"):
        step_plan(5, 10, 1.0, 0)


@pytest.fixture(scope="module")
def pairs():
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(2, 40, (24, 2), generator=generator).tolist()
    chosen = [torch.randint(6, 262, (a,), generator=generator).tolist() for a, _ in lengths]
    rejected = [torch.randint(6, 262, (b,), generator=generator).tolist() for _, b in lengths]
    return chosen, rejected


@pytest.mark.parametrize("packing", [True, False])
def test_every_pair_once_within_the_budget(pairs, packing):
    chosen, rejected = pairs
    order = list(range(24))[::-1]
    batches = micro_batches(chosen, rejected, order, 96, pad_id=0, packing=packing)
    assert sum(b.pairs for b in batches) == 24 and len(batches) > 3
    assert sum(b.tokens for b in batches) == sum(len(c) + len(r) for c, r in zip(chosen, rejected, strict=True))
    for b in batches:
        assert b.input_ids.numel() <= 96
    with pytest.raises(ValueError, match="over the micro-batch budget"):
        micro_batches(chosen, rejected, order, 20, pad_id=0, packing=packing)


def test_packed_rewards_equal_padded_rewards(pairs):
    torch.manual_seed(0)
    model = transformers.LlamaForSequenceClassification(tiny_config()).eval()
    chosen, rejected = pairs
    order = list(range(24))
    with torch.no_grad():

        def all_rewards(batches):
            found = [rewards(model, b.input_ids, b.attention_mask, b.position_ids, b.ends) for b in batches]
            return in_pair_order(batches, found, order)

        padded = all_rewards(micro_batches(chosen, rejected, order, 200, pad_id=0, packing=False))
        packed = all_rewards(micro_batches(chosen, rejected, order, 200, pad_id=0, packing=True))
        model.set_attn_implementation("flex_attention")  # packed rows with a BlockMask, made where they are moved
        flexed = {}
        for size in (128, 16):  # the BlockMask's block size (--flex-block-size) changes which blocks are skipped
            flex = [b.to("cpu") for b in micro_batches(chosen, rejected, order, 200, pad_id=0, block_mask=False,
                                                       flex=size)]  # fmt: skip
            assert all((size, size) == b.attention_mask.BLOCK_SIZE for b in flex)
            flexed[size] = all_rewards(flex)
        # rows padded to a multiple of 16 tokens (--pad-to-multiple-of) rather than to the budget: shorter rows,
        # compiled for each length as training compiles them (the CPU's flex kernel also fails to build for a
        # dynamic length, torch 2.15)
        trimmed = [b.to("cpu") for b in micro_batches(chosen, rejected, order, 200, pad_id=0, block_mask=False,
                                                      flex=16, row_multiple=16)]  # fmt: skip
        lengths = [b.input_ids.shape[1] for b in trimmed]
        assert lengths == [min(200, -(-b.tokens // 16) * 16) for b in trimmed]  # never over the budget
        assert min(lengths) < 200
        with torch._dynamo.config.patch(automatic_dynamic_shapes=False):
            flexed["16, rows of multiples of 16"] = all_rewards(trimmed)
    assert padded.shape == (48,)
    torch.testing.assert_close(packed, padded, rtol=0, atol=1e-5)
    for size, found in flexed.items():
        torch.testing.assert_close(found, padded, rtol=0, atol=1e-5, msg=f"block size {size}")


def test_a_bf16_model_gets_its_block_mask_in_bf16(pairs):
    """The fp32 block mask of packed rows reaches a bf16 model's attention in bf16 (an fp32 one scored wrong
    rewards on a GPU), holding bf16's lowest value rather than -inf."""
    torch.manual_seed(0)
    model = transformers.LlamaForSequenceClassification(tiny_config()).to(torch.bfloat16).eval()
    seen = []
    model.model.register_forward_pre_hook(lambda _, args, kwargs: seen.append(kwargs["attention_mask"]),
                                          with_kwargs=True)  # fmt: skip
    chosen, rejected = pairs
    (batch,) = micro_batches(chosen, rejected, [0, 1], 200, pad_id=0, packing=True)
    assert batch.attention_mask.dtype == torch.float32
    with torch.no_grad():
        packed = rewards(model, batch.input_ids, batch.attention_mask, batch.position_ids, batch.ends)
        (padded_batch,) = micro_batches(chosen, rejected, [0, 1], 200, pad_id=0, packing=False)
        padded = rewards(model, padded_batch.input_ids, padded_batch.attention_mask)
    assert seen[0].dtype == torch.bfloat16 and torch.isfinite(seen[0]).all()
    torch.testing.assert_close(packed.float(), padded.float(), rtol=0, atol=2e-2)


@pytest.mark.parametrize("by_length", [True, False])
def test_scoring_batches_are_the_training_layout_of_single_sequences(pairs, by_length):
    from skyrm.batching import scoring_batches

    sequences = [s for pair in zip(*pairs, strict=True) for s in pair]
    batches = scoring_batches(sequences, 96, pad_id=0, by_length=by_length)
    seen = [i for indices, _ in batches for i in indices]
    assert sorted(seen) == list(range(len(sequences))) and len(batches) > 3
    if by_length:
        assert [len(sequences[i]) for i in seen] == sorted(len(s) for s in sequences)
    else:
        assert seen == list(range(len(sequences)))
    for indices, batch in batches:
        assert batch.input_ids.numel() <= 96
        for row, i in enumerate(indices):  # right padding, the mask on the sequence's own tokens
            n = len(sequences[i])
            assert batch.input_ids[row, :n].tolist() == sequences[i] and batch.attention_mask[row].sum() == n
            assert batch.attention_mask[row, :n].all() and not batch.input_ids[row, n:].any()
    # one layout: a training micro-batch of the same pairs holds the same rows
    train = micro_batches(*pairs, [0, 1], 10_000, pad_id=0, packing=False)[0]
    (indices, score), *_ = scoring_batches(sequences[:4], 10_000, pad_id=0, by_length=False)
    assert indices == [0, 1, 2, 3] and torch.equal(train.input_ids, score.input_ids)
    with pytest.raises(ValueError, match="sequence 0 needs 50 tokens, over the micro-batch budget of 10"):
        scoring_batches([[1] * 50], 10, pad_id=0)


def test_packed_rows_go_first_fit_decreasing():
    # pairs of 60, 50, 40, 30 and 20 tokens under a budget of 100: in their order, a row each would be filled in
    # turn (60 | 50 40 | 30 20: three rows); longest first, first fit: 60 40 | 50 30 20, two full rows
    sizes = [(30, 30), (25, 25), (20, 20), (15, 15), (10, 10)]
    chosen = [[7] * a for a, _ in sizes]
    rejected = [[8] * b for _, b in sizes]
    batches = micro_batches(chosen, rejected, [4, 3, 2, 1, 0], 100, pad_id=0, block_mask=False, flex=16)
    assert [b.pair_ids for b in batches] == [(2, 0), (4, 3, 1)]  # each row's pairs in the order they were taken
    assert [b.tokens for b in batches] == [100, 100]


def test_packed_rows_on_real_steps_are_as_few_as_the_tokens_allow(shared_data):
    from skyrm.data import encode_pairs, read_pairs
    from skyrm.model import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    data = encode_pairs(read_pairs(str(shared_data / "prefs/ultrafeedback_binarized_1200/train_clean.jsonl")),
                        tokenizer, 4096, "drop")  # fmt: skip
    rows = least = 0
    for step in step_plan(len(data), 128, 1.0, seed=0):
        tokens = sum(len(data.chosen[p]) + len(data.rejected[p]) for p in step)
        least += -(-tokens // 16_384)
        rows += len(micro_batches(data.chosen, data.rejected, step, 16_384, tokenizer.pad_token_id, block_mask=False,
                                  flex=128))  # fmt: skip
    assert rows <= 1.01 * least, f"{rows} packed rows where {least} hold the tokens"


def test_rows_padded_to_a_multiple_hold_almost_only_real_tokens(shared_data):
    """--pad-to-multiple-of on real steps: the rows computed are real tokens but for under 1% (steps of 32 pairs in
    rows of 16,384 tokens: 91.0% real when every row is 16,384 long, 99.6% padded to a multiple of 128)."""
    from skyrm.data import encode_pairs, read_pairs
    from skyrm.model import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    data = encode_pairs(read_pairs(str(shared_data / "prefs/ultrafeedback_binarized_1200/train_clean.jsonl")),
                        tokenizer, 4096, "drop")  # fmt: skip
    fill = {}
    for multiple in (0, 128):
        batches = [b for step in step_plan(len(data), 32, 1.0, seed=0)
                   for b in micro_batches(data.chosen, data.rejected, step, 16_384, tokenizer.pad_token_id,
                                          block_mask=False, flex=128, row_multiple=multiple)]  # fmt: skip
        fill[multiple] = sum(b.tokens for b in batches) / sum(b.input_ids.numel() for b in batches)
    assert fill[0] < 0.95 and fill[128] > 0.99, fill
