"""The pad policy: which token pads a batch, decided once for a tokenizer and its model, and used alike by
training, evaluation and model loading.

Why it matters: skyrm reads a reward at a row's last attended token, while Hugging Face's
``...ForSequenceClassification`` (and every tool built on it: the official RewardBench runner, TRL, vLLM) reads it
at the row's last token that is not ``config.pad_token_id``. On right-padded rows the two agree exactly when no
sequence ends with the pad token. A pad that can end a sequence (EOS, the end-of-turn token a chat template writes,
e.g. Llama-3.1's ``<|eot_id|>``) makes every Hugging Face tool read such rows one token early.

The policy (:func:`choose_pad`), in order:

1. the tokenizer's own pad token, unless it can end a sequence;
2. a pad token reserved in its vocabulary (:data:`RESERVED_PADS`: Llama-3.1's ``<|finetune_right_pad_id|>``,
   ``<pad>``, ...), unless it can end a sequence;
3. a new special token :data:`ADDED_PAD`; the model's embeddings then grow by a row (:func:`fit_embeddings`).

A token "can end a sequence" when it is an EOS id of the tokenizer or of the model's config, or a token the chat
template writes around a message. The chosen id goes into the model's config (``pad_token_id``) and the tokenizer
saved with it, so an exported model is read the same way by skyrm and by Hugging Face.
"""

from __future__ import annotations

__all__ = ["RESERVED_PADS", "ADDED_PAD", "sequence_enders", "choose_pad", "fit_config", "fit_embeddings", "pad_model"]

#: Pad tokens that tokenizers reserve without always declaring them as their pad, in order of preference.
RESERVED_PADS = ("<|finetune_right_pad_id|>", "<pad>", "[PAD]", "<|pad|>", "<|reserved_special_token_0|>")
#: The special token added as pad where the vocabulary has no usable one.
ADDED_PAD = "<|pad|>"

_PROBE = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]


def _ids(value) -> set[int]:
    if value is None:
        return set()
    if isinstance(value, int):
        return {value}
    return {int(v) for v in value}


def sequence_enders(tokenizer, eos_token_id=None) -> set[int]:
    """The ids that can end a sequence: the tokenizer's EOS, the model's ``eos_token_id`` (an id or a list), and
    every token the chat template writes around a message (end-of-turn tokens, newlines, BOS)."""
    enders = _ids(tokenizer.eos_token_id) | _ids(eos_token_id)
    if getattr(tokenizer, "chat_template", None) is not None:  # the probe's words are plain text, never a pad
        text = tokenizer.apply_chat_template(_PROBE, tokenize=False)
        enders |= set(tokenizer(text, add_special_tokens=False)["input_ids"])
    return enders


def choose_pad(tokenizer, eos_token_id=None) -> int:
    """Sets ``tokenizer``'s pad token by the policy of this module and returns its id. ``eos_token_id``: the model
    config's (an id or a list). Idempotent: a tokenizer whose pad is already usable keeps it."""
    enders = sequence_enders(tokenizer, eos_token_id)
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id not in enders:
        return tokenizer.pad_token_id
    vocab = tokenizer.get_vocab()
    for name in RESERVED_PADS:
        if name in vocab and vocab[name] not in enders:
            tokenizer.pad_token = name
            return vocab[name]
    tokenizer.add_special_tokens({"pad_token": ADDED_PAD})
    return tokenizer.pad_token_id


def fit_config(config, pad_id: int) -> None:
    """A model config with ``pad_id`` as ``pad_token_id`` and a vocabulary that holds it (for a model built from
    the config; :func:`fit_embeddings` for one whose weights are loaded)."""
    config.pad_token_id = pad_id
    config.vocab_size = max(config.vocab_size, pad_id + 1)


def fit_embeddings(model, pad_id: int) -> None:
    """Grows the model's input embeddings to hold ``pad_id`` (a pad added by :func:`choose_pad`) and writes it
    into the config (:func:`fit_config`). The new row's values do not matter: padding is never attended to."""
    if pad_id >= model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(pad_id + 1, mean_resizing=False)
    fit_config(model.config, pad_id)


def pad_model(model, tokenizer) -> int:
    """:func:`choose_pad` and :func:`fit_embeddings` for a loaded model: the pad id, set in both."""
    pad_id = choose_pad(tokenizer, getattr(model.config, "eos_token_id", None))
    fit_embeddings(model, pad_id)
    return pad_id
