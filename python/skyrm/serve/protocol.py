"""The request bodies of ``skyrm serve``, as pydantic models (read with ``model_validate_json``).

* ``POST /get_reward`` (OpenRLHF's remote reward model): ``{"query": [TEXT, ...], "prompts": [...], "labels":
  [...]}``; each query is a prompt and its answer already in the chat template's format (OpenRLHF decodes the
  policy's tokens, special tokens included). ``prompts`` and ``labels`` are accepted and not used; other fields
  are ignored, as OpenRLHF's own server ignores them.
* ``POST /score``: ``{"items": [ITEM, ...]}``, an item being ``{"messages": [{"role", "content"}, ...]}`` (a whole
  conversation, its last message the answer scored) or ``{"prompt": TEXT or MESSAGES, "response": TEXT}``.
* ``POST /compare``: ``{"pairs": [{"prompt": TEXT or MESSAGES, "response_a": TEXT, "response_b": TEXT}, ...]}``.

Fields other than these are refused for ``/score`` and ``/compare`` (a typo is an error, not a silently missing
answer). :func:`error_message` turns pydantic's errors into one line that names the field, e.g.
``items[0].response: Field required``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

__all__ = ["Message", "ScoreItem", "ScoreRequest", "ComparePair", "CompareRequest", "RewardRequest", "error_message"]

FORMS = 'an item is {"messages": [...]} or {"prompt": ..., "response": ...}'


class Message(BaseModel):
    """One turn of a conversation; other keys of a message are ignored."""

    role: str
    content: str

    def as_dict(self) -> dict:
        return {"role": self.role, "content": self.content}


Prompt = str | list[Message]


def as_prompt(prompt: Prompt):
    """A prompt as :class:`skyrm.eval.runner.Encoder` reads it: text, or a list of message dicts."""
    return prompt if isinstance(prompt, str) else [m.as_dict() for m in prompt]


class ScoreItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: list[Message] | None = None
    prompt: Prompt | None = None
    response: str | None = None

    @model_validator(mode="after")
    def _one_form(self) -> ScoreItem:
        if self.messages is not None:
            if self.prompt is not None or self.response is not None:
                raise ValueError(f"messages: give either messages or prompt and response, not both ({FORMS})")
            if not self.messages:
                raise ValueError("messages: empty (a conversation needs at least its answer)")
        elif self.prompt is None:
            raise ValueError(f"prompt: missing ({FORMS})")
        elif self.response is None:
            raise ValueError(f"response: missing ({FORMS})")
        return self

    def conversation(self) -> list[dict] | None:
        """The item's conversation as given, or None for a prompt and response (formatted by the encoder)."""
        return None if self.messages is None else [m.as_dict() for m in self.messages]


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[ScoreItem]


class ComparePair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: Prompt
    response_a: str
    response_b: str


class CompareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pairs: list[ComparePair]


class RewardRequest(BaseModel):
    """OpenRLHF's request: the queries to score, with its prompts and labels (not used)."""

    model_config = ConfigDict(extra="ignore")

    query: list[str]
    prompts: list[Any] | None = None
    labels: list[Any] | None = None

    @model_validator(mode="after")
    def _aligned(self) -> RewardRequest:
        for name in ("prompts", "labels"):
            values = getattr(self, name)
            if values is not None and len(values) != len(self.query):
                raise ValueError(f"{name}: {len(values)} values for {len(self.query)} queries (one per query)")
        return self


def _where(loc: tuple) -> str:
    """``("body", "items", 0, "response")`` -> ``items[0].response``; union member tags left out."""
    text = ""
    for part in loc:
        if part == "body":
            continue
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("str", "list[Message]"):  # which member of a prompt's union failed: the field says enough
            continue
        else:
            text += f".{part}" if text else str(part)
    return text


def error_message(errors: list[dict], limit: int = 3) -> str:
    """One line from pydantic's (or FastAPI's) validation errors: ``FIELD: what is wrong``, the first ``limit``."""
    seen, parts = set(), []
    for error in errors:
        where, message = _where(tuple(error.get("loc", ()))), str(error.get("msg", "invalid"))
        if error.get("type") == "json_invalid":
            line = f"the body is not valid JSON ({error.get('ctx', {}).get('error', message)})"
        elif message.startswith("Value error, "):  # our validators' messages start with the field they are about
            message = message[len("Value error, ") :]
            line = f"{where}.{message}" if where else message
        else:
            line = f"{where or 'the body'}: {message}"
        if line not in seen:
            seen.add(line)
            parts.append(line)
    more = len(parts) - limit
    return "; ".join(parts[:limit]) + (f" (and {more} more)" if more > 0 else "")
