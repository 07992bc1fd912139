"""Reward models: any Hugging Face decoder as ``...ForSequenceClassification`` with one label, the reward read at
the last real token of each sequence.

Where that token is:

* padded rows (right or left padding): the last position whose attention mask is 1. Hugging Face's own
  sequence-classification forward reads the last token that is not ``config.pad_token_id`` instead; the two agree
  because the pad is never a token that ends a sequence (:mod:`skyrm.padding`, tests/skyrm/test_export_readout.py);
* packed rows (several sequences in one row, ``position_ids`` restarting at 0 for each): the position before each
  restart, and the last attended position of the row.

Only the selected hidden states go through the score head. ``tiny_config`` is a small random-init Llama for tests
and demos.
"""

from __future__ import annotations

import torch
from torch import nn

from skyrm.varlen import TORCH_VARLEN, register

__all__ = [
    "tiny_tokenizer",
    "last_token_index",
    "packed_ends",
    "block_causal_mask",
    "rewards",
    "tiny_config",
    "attention_implementation",
    "score_head",
    "decoder",
]


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Per row of a padded batch, the index of its last attended token (right or left padding)."""
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be (batch, length), got shape {tuple(attention_mask.shape)}")
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    last = (positions * attention_mask.long()).argmax(-1)
    if not bool(attention_mask.any(-1).all()):
        raise ValueError("a row has no attended token")
    return last


def packed_ends(position_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """(rows, columns) of the last token of every sequence in packed rows, sequences in row-major order.
    A sequence starts where ``position_ids`` is 0; the row's padding (attention mask 0, at the end) is ignored."""
    if position_ids.dim() != 2:
        raise ValueError(f"position_ids must be (batch, length), got shape {tuple(position_ids.shape)}")
    valid = torch.ones_like(position_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    starts_next = torch.zeros_like(valid)
    starts_next[:, :-1] = position_ids[:, 1:] == 0
    next_valid = torch.zeros_like(valid)
    next_valid[:, :-1] = valid[:, 1:]
    end = valid & (starts_next | ~next_valid)
    rows, cols = end.nonzero(as_tuple=True)
    return rows, cols


def decoder(model: nn.Module) -> nn.Module:
    """The transformer under a ``...ForSequenceClassification`` model (``model.model`` for Llama, Gemma, Qwen)."""
    prefix = getattr(model, "base_model_prefix", "model")
    inner = getattr(model, prefix, None)
    if inner is None:
        raise ValueError(f"{type(model).__name__} has no base model at .{prefix}")
    return inner


def score_head(model: nn.Module) -> nn.Module:
    head = getattr(model, "score", None)
    if head is None:
        raise ValueError(f"{type(model).__name__} has no `score` head: load it as ...ForSequenceClassification")
    return head


def rewards(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor | None = None,
    ends: tuple[torch.Tensor, torch.Tensor] | None = None,
    varlen: tuple[torch.Tensor, int] | None = None,
) -> torch.Tensor:
    """One reward per sequence. Padded rows: the reward at each row's last attended token. Packed rows: pass
    ``position_ids`` restarting at 0 per sequence, an ``attention_mask`` that keeps attention inside each sequence
    (a (batch, 1, length, length) block mask or flex attention's BlockMask), or none and ``varlen``, the
    cumulative lengths of the sequences and the longest for a varlen kernel, and ``ends``, the (rows, columns) of
    each sequence's last token (:func:`packed_ends`). Right-padded rows may also go without a mask (``None``) with
    their ``ends`` given: under causal attention no real token sees a later pad (under ``torch_varlen`` padded rows
    must be right-padded: it reads no mask)."""
    sharded = getattr(model, SHARDED_ENTRY, None)
    if sharded is not None:
        return sharded(input_ids, attention_mask, position_ids, ends, varlen)
    return reward_forward(model, input_ids, attention_mask, position_ids, ends, varlen)


#: The attribute under which a sharded model carries :func:`reward_forward`, registered with FSDP as a forward
#: method so that the root's parameters (embeddings, final norm, score head) are gathered around it.
SHARDED_ENTRY = "skyrm_rewards"


def reward_forward(model, input_ids, attention_mask, position_ids=None, ends=None, varlen=None) -> torch.Tensor:
    """:func:`rewards` itself: the decoder's last hidden states at the sequence ends, through the score head."""
    body = decoder(model)
    weights = body.get_input_embeddings().weight.dtype
    mask = attention_mask if isinstance(attention_mask, torch.Tensor) and attention_mask.is_floating_point() else None
    if mask is not None and weights.itemsize < mask.itemsize:
        # an additive block mask in the (lower) precision of a bf16 model: handed the fp32 mask, a bf16 model scored
        # up to 1.5 off on an H100 (bench/gpu_check.py), while training, where FSDP casts its inputs, matched
        attention_mask = attention_mask.to(weights)
    # no KV cache: nothing is generated (a cache costs memory, and a guard per layer under --compile)
    # a varlen kernel's sequences, under the names transformers' FlashAttention path reads (torch_varlen too)
    lengths = {} if varlen is None else {"cu_seq_lens_q": varlen[0], "cu_seq_lens_k": varlen[0],
                                         "max_length_q": varlen[1], "max_length_k": varlen[1]}  # fmt: skip
    hidden = body(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False,
                  **lengths)  # fmt: skip
    states = hidden.last_hidden_state if hasattr(hidden, "last_hidden_state") else hidden[0]
    if ends is None:
        rows = torch.arange(states.shape[0], device=states.device)
        ends = (rows, last_token_index(attention_mask))
    # a copy, not a view: FSDP hooks the output for the backward, which an in-place op on a view would bypass
    return score_head(model)(states[ends[0], ends[1]])[:, 0].clone()


def document_block_mask(position_ids: torch.Tensor, block_size: int = 128):
    """flex_attention's BlockMask for one packed row: each token sees the earlier tokens of its own sequence only
    (sequences start where ``position_ids`` is 0; a padding token, at position 0, sees itself). Blocks
    (``block_size`` square) that no sequence spans are skipped, so a packed row costs the attention of its
    sequences, not of its whole length."""
    from torch.nn.attention.flex_attention import create_block_mask

    if position_ids.shape[0] != 1:
        raise ValueError(f"a document mask is for one packed row, got {position_ids.shape[0]} rows")
    sequence = torch.cumsum((position_ids[0] == 0).long(), dim=0)

    def inside(batch, head, query, key):
        return (sequence[query] == sequence[key]) & (query >= key)

    length = position_ids.shape[1]
    return create_block_mask(inside, B=None, H=None, Q_LEN=length, KV_LEN=length, device=position_ids.device,
                             BLOCK_SIZE=block_size)  # fmt: skip


#: The attention implementation whose packed rows take a :func:`document_block_mask`.
FLEX_ATTENTION = "flex_attention"


def block_causal_mask(position_ids: torch.Tensor, valid: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The additive (batch, 1, length, length) mask of packed rows: each token sees the earlier tokens of its own
    sequence only (sequences start where ``position_ids`` is 0; ``valid`` marks real tokens)."""
    starts = (position_ids == 0) & valid.bool()
    sequence = torch.cumsum(starts.long(), dim=-1)  # the sequence number of every token
    length = position_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=position_ids.device).tril()
    same = sequence[:, :, None] == sequence[:, None, :]
    allowed = same & causal & valid.bool()[:, None, :]
    allowed |= torch.eye(length, dtype=torch.bool, device=position_ids.device)  # padding attends to itself
    mask = torch.zeros(allowed.shape, dtype=dtype, device=position_ids.device)
    # bf16's lowest, not fp32's: mixed precision casts the mask to bf16, where fp32's lowest becomes -inf
    return mask.masked_fill(~allowed, torch.finfo(torch.bfloat16).min)[:, None]


def attention_implementation(model_type: str, requested: str | None) -> str | None:
    """The attention implementation to use: ``requested``, except that Gemma-2 never runs under SDPA (its
    attention-logit soft-capping is not applied there) and gets eager attention unless flash attention is asked
    for. None leaves the model's default. :data:`~skyrm.varlen.TORCH_VARLEN` is registered with transformers here."""
    if model_type == "gemma2":
        if requested in ("sdpa", TORCH_VARLEN):
            raise ValueError(f"Gemma-2 needs eager or flash attention ({requested} has no logit soft-capping); "
                             "use --attn-implementation eager or flash_attention_2")  # fmt: skip
        return requested or "eager"
    if requested == TORCH_VARLEN:
        register()
    return requested


TINY_SPECIALS = ("<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>")
TINY_CHAT_TEMPLATE = "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"


def tiny_tokenizer():
    """A byte-level tokenizer for the tiny model (one token per UTF-8 byte, plus the special tokens) that puts a BOS
    in front of what it encodes, as Llama's does, with a chat template; a real Hugging Face fast tokenizer, saved
    with the model like any other."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(TINY_SPECIALS)}
    vocab |= {ch: len(TINY_SPECIALS) + i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    inner = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    inner.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    inner.decoder = decoders.ByteLevel()
    inner.add_special_tokens(list(TINY_SPECIALS))
    inner.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])  # as Llama
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=inner, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def tiny_config(vocab_size: int = len(TINY_SPECIALS) + 256, pad_token_id: int = 0, **overrides):
    """A small random-init Llama reward model: 2 layers, hidden size 64, grouped-query attention."""
    from transformers import LlamaConfig

    settings = {
        "vocab_size": vocab_size, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048,
        "num_labels": 1, "pad_token_id": pad_token_id, "tie_word_embeddings": False,
    }  # fmt: skip
    return LlamaConfig(**{**settings, **overrides})
