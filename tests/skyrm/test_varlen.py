"""``--attn-implementation torch_varlen`` on the CPU: PyTorch's varlen kernel runs on CUDA GPUs only, so here a
plain reference (causal SDPA over each sequence, key-value heads repeated) stands in for it, and what is checked
is everything around the kernel: the sequences' cumulative lengths made by the batching, their way through the
model, the layout of the heads and the readout. bench/gpu_check.py's numerics part compares the real kernel."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("torch.nn.attention.varlen")
from skyrm import varlen  # noqa: E402
from skyrm.batching import fixed_varlen, in_pair_order, micro_batches  # noqa: E402
from skyrm.config import TrainConfig  # noqa: E402
from skyrm.model import attention_implementation, rewards, tiny_config  # noqa: E402


def reference_kernel(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, **options):
    """What the varlen kernel computes, sequence by sequence: (tokens, heads, dim) in and out; ``options`` as the
    kernel generation at hand takes them (``KERNELS``)."""
    assert torch.equal(cu_seq_q, cu_seq_k) and max_q == max_k and cu_seq_q.dtype == torch.int32
    bounds = cu_seq_q.tolist()
    lengths = torch.tensor(bounds).diff()
    assert bounds[0] == 0 and bounds[-1] == query.shape[0] and max_q >= lengths.max() and lengths.min() >= 1
    assert options.get("window_size", (-1, 0)) == (-1, 0) and options.get("is_causal", True)  # causal, either way
    assert options.get("enable_gqa", False) == (key.shape[1] != query.shape[1] and "gqa" in KERNEL)
    repeat = query.shape[1] // key.shape[1]
    out = torch.empty_like(query)
    for start, end in zip(bounds, bounds[1:], strict=False):
        q, k, v = (t[start:end].transpose(0, 1).float() for t in (query, key, value))
        k, v = k.repeat_interleave(repeat, 0), v.repeat_interleave(repeat, 0)
        attended = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                                    scale=options.get("scale"))  # fmt: skip
        out[start:end] = attended.transpose(0, 1).to(query.dtype)
    return out


#: What each torch's kernel takes: 2.10 ``is_causal``; 2.11 a window and a scale; later ones ``enable_gqa`` too.
KERNELS = {"2.10": {"window": False, "scale": False, "gqa": False},
           "2.11": {"window": True, "scale": True, "gqa": False},
           "2.15": {"window": True, "scale": True, "gqa": True}}  # fmt: skip
KERNEL: set[str] = set()  # the options of the generation under test that are on


@pytest.fixture(params=sorted(KERNELS))
def reference(request, monkeypatch):
    attention_implementation("llama", varlen.TORCH_VARLEN)  # registers it
    monkeypatch.setitem(varlen._KERNEL, "call", reference_kernel)
    for option, taken in KERNELS[request.param].items():
        monkeypatch.setitem(varlen._KERNEL, option, taken)
    KERNEL.clear()
    KERNEL.update(option for option, taken in KERNELS[request.param].items() if taken)
    return request.param


@pytest.fixture(scope="module")
def pairs():
    generator = torch.Generator().manual_seed(3)
    lengths = [(7, 12), (30, 5), (1, 2), (16, 16), (9, 21)]
    chosen = [torch.randint(3, 260, (a,), generator=generator).tolist() for a, _ in lengths]
    rejected = [torch.randint(3, 260, (b,), generator=generator).tolist() for _, b in lengths]
    return chosen, rejected


def test_packed_rows_carry_the_cumulative_lengths_of_their_sequences(pairs):
    chosen, rejected = pairs
    batches = micro_batches(chosen, rejected, list(range(5)), 64, 0, packing=True, block_mask=False)
    assert len(batches) > 1
    for batch in batches:
        starts = (batch.position_ids[0] == 0).nonzero().flatten().tolist()
        cu, longest = batch.varlen
        assert cu.dtype == torch.int32 and cu.tolist() == [*starts, batch.input_ids.shape[1]]
        assert longest == cu.diff().max() and batch.tokens == cu[-1]
        moved = batch.to("cpu")
        assert torch.equal(moved.cu_seqlens, cu) and moved.longest == longest
    # the other layouts have none
    for layout in ({"block_mask": True}, {"block_mask": False, "flex": 128}, {"packing": False}):
        assert all(b.varlen is None for b in micro_batches(chosen, rejected, [0, 1], 64, 0, **layout))


def test_varlen_rows_in_fixed_shapes(pairs):
    """With a multiple: every row's length a multiple of it (or the budget), the same number of sequences in every
    row (the most pairs a row can hold, twice, and one: the padding cut into the sequences a row lacks, none empty),
    one bound on every length, and the real sequences where they were."""
    chosen, rejected = pairs
    order = list(range(len(chosen)))
    count, longest = fixed_varlen(chosen, rejected, len(order), 96, 32, longest=20)
    sizes = sorted(len(c) + len(r) for c, r in zip(chosen, rejected, strict=True))  # 3, 19, 30, 32, 35
    assert count == 2 * 4 + 1 and longest == 32  # the four shortest pairs fit in 96 tokens; no piece over 32
    plain = micro_batches(chosen, rejected, order, 96, 0, packing=True, block_mask=False)
    fixed = micro_batches(chosen, rejected, order, 96, 0, packing=True, block_mask=False, row_multiple=32,
                          shape=(count, longest))  # fmt: skip
    default = micro_batches(chosen, rejected, order, 96, 0, packing=True, block_mask=False, row_multiple=32)
    assert [b.cu_seqlens.tolist() for b in default] == [b.cu_seqlens.tolist() for b in fixed]  # these pairs' own
    for batch in fixed:
        cu, bound = batch.varlen
        lengths = cu.diff()
        assert batch.input_ids.shape[1] % 32 == 0 or batch.input_ids.shape[1] == 96
        assert len(cu) == count + 1 and cu[-1] == batch.input_ids.shape[1] and lengths.min() >= 1
        assert bound == longest and lengths.max() <= bound
        real = 2 * batch.pairs
        assert cu[real] == batch.tokens and (batch.position_ids[0, : batch.tokens] == 0).sum() == real
    assert sorted(p for b in fixed for p in b.pair_ids) == order and len(fixed) >= len(plain) and sizes[-1] == 35
    with pytest.raises(ValueError, match="the longest pair \\(35 tokens\\) needs a micro-batch of at least 40"):
        fixed_varlen(chosen, rejected, len(order), 38, 32)  # two pairs a row at most: 5 sequences, 35 + 5 tokens
    assert fixed_varlen([], [], 32, 96, 32) == (1, 32)  # no pairs: nothing to hold
    with pytest.raises(ValueError, match="a sequence of 60 tokens, over the bound of 20 given"):
        micro_batches([[1] * 60], [[2] * 5], [0], 128, 0, packing=True, block_mask=False, row_multiple=16,
                      shape=(3, 20))  # fmt: skip


@pytest.mark.parametrize("multiple", [0, 32])
def test_packed_rows_under_torch_varlen_score_as_padded_rows_under_sdpa(reference, pairs, multiple):
    """The same bf16 weights: packed rows through the varlen path (as long as their sequences, or in fixed shapes),
    padded rows through it (one sequence a row, no lengths given) and padded rows under SDPA give the same rewards,
    to bf16's rounding."""
    chosen, rejected = pairs
    torch.manual_seed(0)
    config = tiny_config()
    assert config.num_key_value_heads < config.num_attention_heads  # grouped-query attention's layout too
    model = transformers.LlamaForSequenceClassification(config).to(torch.bfloat16).eval()
    order = list(range(len(chosen)))

    def score(implementation: str, **layout) -> torch.Tensor:
        model.set_attn_implementation(implementation)
        batches = micro_batches(chosen, rejected, order, 64, 0, **layout)
        with torch.no_grad():
            values = [rewards(model, b.input_ids, b.attention_mask, b.position_ids, b.ends, b.varlen).float()
                      for b in batches]  # fmt: skip
        return in_pair_order(batches, values, order)

    padded = score("sdpa", packing=False)
    packed = score(varlen.TORCH_VARLEN, packing=True, block_mask=False, row_multiple=multiple)
    rows = score(varlen.TORCH_VARLEN, packing=False)
    assert padded.abs().mean() > 0.05  # rewards that differ from zero
    torch.testing.assert_close(packed, padded, rtol=0, atol=0.03)
    torch.testing.assert_close(rows, padded, rtol=0, atol=0.03)


def test_gradients_flow_through_the_varlen_path(reference, pairs):
    chosen, rejected = pairs
    torch.manual_seed(0)
    model = transformers.LlamaForSequenceClassification(tiny_config()).to(torch.bfloat16)
    model.set_attn_implementation(varlen.TORCH_VARLEN)
    (batch,) = micro_batches(chosen, rejected, [0, 1], 256, 0, packing=True, block_mask=False)
    rewards(model, batch.input_ids, None, batch.position_ids, batch.ends, batch.varlen).sum().backward()
    grad = model.model.layers[0].self_attn.q_proj.weight.grad
    assert grad is not None and grad.abs().sum() > 0 and torch.isfinite(grad).all()


def test_what_torch_varlen_cannot_do_is_refused(reference):
    with pytest.raises(ValueError, match="has no logit soft-capping"):
        attention_implementation("gemma2", varlen.TORCH_VARLEN)
    with pytest.raises(ValueError, match="torch_varlen computes in bf16"):
        TrainConfig(data="x.jsonl", output_dir="out", attn_implementation="torch_varlen", dtype="fp32").validate()
    half = torch.zeros(2, 4, 8, 16, dtype=torch.bfloat16)
    forward = varlen.varlen_attention_forward
    with pytest.raises(ValueError, match="bf16 or fp16"):
        forward(None, half.float(), half.float(), half.float(), None)
    for unsupported in ({"sliding_window": 4}, {"softcap": 30.0}):
        with pytest.raises(ValueError, match="no sliding window or logit soft-capping"):
            forward(None, half, half, half, None, **unsupported)
    with pytest.raises(ValueError, match="no attention dropout"):
        forward(None, half, half, half, None, dropout=0.1)
    with pytest.raises(ValueError, match="in one row, got 2 rows"):
        forward(None, half, half, half, None, cu_seq_lens_q=torch.tensor([0, 16], dtype=torch.int32), max_length_q=8)
    if reference == "2.10":  # no scale to give: only the default one is right
        with pytest.raises(ValueError, match="has no scale"):
            forward(None, half, half, half, None, scaling=0.5)
