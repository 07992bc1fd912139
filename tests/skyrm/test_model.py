"""Where the reward is read: padded (right and left) and packed rows, against Hugging Face's own
sequence-classification forward on the same weights."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from skyrm.model import block_causal_mask, last_token_index, packed_ends, rewards, tiny_config  # noqa: E402


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return transformers.LlamaForSequenceClassification(tiny_config()).eval()


@pytest.fixture(scope="module")
def sequences():
    generator = torch.Generator().manual_seed(1)
    return [torch.randint(3, 260, (n,), generator=generator) for n in (5, 11, 3, 8, 1)]


def padded(sequences, side: str):
    length = max(len(s) for s in sequences)
    ids = torch.zeros(len(sequences), length, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(sequences):
        span = slice(0, len(s)) if side == "right" else slice(length - len(s), length)
        ids[i, span], mask[i, span] = s, 1
    return ids, mask


def test_last_token_index():
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1]])
    assert last_token_index(right).tolist() == [1, 3, 0]
    assert last_token_index(left).tolist() == [3, 3, 3]
    with pytest.raises(ValueError, match="no attended token"):
        last_token_index(torch.tensor([[1, 1], [0, 0]]))


def test_packed_ends():
    position_ids = torch.tensor([[0, 1, 2, 0, 1, 0, 0, 0], [0, 1, 2, 3, 4, 5, 0, 1]])
    valid = torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1]])
    rows, cols = packed_ends(position_ids, valid)
    assert list(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 2), (0, 4), (0, 5), (1, 5), (1, 7)]


@pytest.mark.parametrize("side", ["right", "left"])
def test_rewards_equal_hugging_face_forward(model, sequences, side):
    ids, mask = padded(sequences, side)
    with torch.no_grad():
        ours = rewards(model, ids, mask)
        theirs = model(input_ids=ids, attention_mask=mask).logits.squeeze(-1)
    assert ours.shape == (len(sequences),)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_packed_rewards_equal_padded_rewards(model, sequences):
    """Several sequences per row, positions restarting per sequence, attention kept inside each sequence."""
    rows = [[sequences[0], sequences[1], sequences[4]], [sequences[2], sequences[3]]]
    length = 20
    ids = torch.zeros(2, length, dtype=torch.long)
    positions, valid = torch.zeros_like(ids), torch.zeros_like(ids)
    for r, parts in enumerate(rows):
        at = 0
        for s in parts:
            ids[r, at : at + len(s)], positions[r, at : at + len(s)] = s, torch.arange(len(s))
            valid[r, at : at + len(s)] = 1
            at += len(s)
    with torch.no_grad():
        packed = rewards(model, ids, block_causal_mask(positions, valid, torch.float32), positions,
                         ends=packed_ends(positions, valid))  # fmt: skip
        alone = rewards(model, *padded(sequences, "right"))
    order = [0, 1, 4, 2, 3]
    torch.testing.assert_close(packed, alone[order], rtol=0, atol=1e-5)


def test_gemma2_never_runs_under_sdpa():
    from skyrm.model import attention_implementation

    assert attention_implementation("gemma2", None) == "eager"
    assert attention_implementation("gemma2", "flash_attention_2") == "flash_attention_2"
    with pytest.raises(ValueError, match="Gemma-2 needs eager or flash attention"):
        attention_implementation("gemma2", "sdpa")
    assert attention_implementation("llama", None) is None and attention_implementation("llama", "sdpa") == "sdpa"
