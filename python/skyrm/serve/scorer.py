"""The model side of ``skyrm serve``: one reward model, its items encoded exactly as offline scoring encodes them
(:class:`skyrm.eval.runner.Encoder`: the chat template, exactly one BOS, the end kept over ``max_length``), and
batches scored by :func:`skyrm.eval.runner.score_sequences` (length-sorted padded micro-batches under the token
budget, the reward at each sequence's last token). A server's score is therefore the score ``skyrm.eval`` gives
the same text. Encoding runs in request threads; :meth:`Scorer.__call__` on the server's one worker thread.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from skyrm.requires import first_line
from skyrm.serve.protocol import ComparePair, ScoreItem, as_prompt

__all__ = ["Scorer", "ItemError"]


class ItemError(ValueError):
    """An item that cannot be scored (the chat template refuses it, or it is over the token budget); the
    message names it (HTTP 400)."""


class Scorer:
    """``model`` (a one-label reward model) and ``tokenizer``, as :func:`skyrm.eval.runner.load_model` returns
    them. ``max_length``: keep the last N tokens of a longer sequence (default: the model's
    ``max_position_embeddings``); ``batch_tokens``: tokens per micro-batch, padding included (raised to
    ``max_length`` when lower, so every sequence fits)."""

    def __init__(self, model, tokenizer, *, batch_tokens: int = 16_384, max_length: int | None = None,
                 bos: str = "single") -> None:  # fmt: skip
        from skyrm.data import text_encoder
        from skyrm.eval.runner import BenchmarkError, Encoder
        from skyrm.padding import pad_model

        if getattr(model.config, "num_labels", 1) != 1:
            raise BenchmarkError(f"the model has {model.config.num_labels} labels; a reward model has exactly one")
        self.model, self.tokenizer = model, tokenizer
        self.max_length = max_length or getattr(model.config, "max_position_embeddings", None)
        self.encoder = Encoder(tokenizer, bos, self.max_length)
        # a query of OpenRLHF is text in the template's format: the same BOS rule as the template's text
        self._text = text_encoder(tokenizer) if bos == "single" else (lambda text: tokenizer(text)["input_ids"])
        self.batch_tokens = max(batch_tokens, self.max_length or 0)
        self.pad_id = pad_model(model, tokenizer)
        self.device = next(model.parameters()).device

    def __call__(self, sequences: list[list[int]]) -> list[float]:
        """One reward per sequence, in their order (the worker thread's work)."""
        from skyrm.eval.runner import score_sequences

        return score_sequences(self.model, sequences, self.batch_tokens, self.pad_id, self.device, progress=False)

    def item(self, item: ScoreItem) -> list[int]:
        conversation = item.conversation()
        if conversation is not None:
            return self.encoder.conversation(conversation)
        return self.encoder(as_prompt(item.prompt), item.response)

    def pair(self, pair: ComparePair) -> list[list[int]]:
        prompt = as_prompt(pair.prompt)
        return [self.encoder(prompt, pair.response_a), self.encoder(prompt, pair.response_b)]

    def query(self, text: str) -> list[int]:
        ids = self._text(self.unpadded(text))
        return ids[-self.max_length :] if self.max_length is not None else ids  # the end kept, as the Encoder does

    def unpadded(self, text: str) -> str:
        """A query without the pad and EOS tokens around it, as OpenRLHF's ``serve_rm`` takes them away (a batch of
        generations decoded with its special tokens carries its pads): runs of them at the start go, and a run at
        the end leaves one EOS if it held any (the EOS ending the answer stays; its repeats and the pads go). A query
        that does not end in one gets none added (OpenRLHF's server adds one): the reward is read where the text
        ends, as training reads the template's own end."""
        tokens = [t for t in (self.tokenizer.pad_token, self.tokenizer.eos_token) if t]
        if not tokens:
            return text
        run = "(?:" + "|".join(re.escape(t) for t in tokens) + ")+"
        text = re.sub(f"^{run}", "", text)
        end = re.search(rf"{run}\Z", text)
        if end is None:
            return text
        eos = self.tokenizer.eos_token
        return text[: end.start()] + (eos if eos and eos in end.group() else "")

    def encode_all(self, values: list, field: str, encode: Callable[..., list]) -> list[list[int]]:
        """``encode`` of each value (one sequence, or a list of them for a pair), flattened; a value that cannot
        be encoded or is over the token budget is an :class:`ItemError` naming ``field[i]``."""
        out: list[list[int]] = []
        for i, value in enumerate(values):
            try:
                encoded = encode(value)
            except Exception as e:  # a template that refuses a conversation (roles out of order, ...)
                raise ItemError(f"{field}[{i}]: could not be encoded with the model's chat template: "
                                f"{first_line(e)}") from None  # fmt: skip
            for ids in encoded if encoded and isinstance(encoded[0], list) else [encoded]:
                if not ids:
                    raise ItemError(f"{field}[{i}]: no tokens (empty text)")
                if len(ids) > self.batch_tokens:
                    raise ItemError(f"{field}[{i}]: {len(ids)} tokens, over the server's --batch-tokens "
                                    f"{self.batch_tokens}")  # fmt: skip
                out.append(ids)
        return out
