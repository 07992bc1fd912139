"""The canonical pair table, and adapters that read the common preference-data layouts into it.

Every layout is converted once, here, into one schema; nothing downstream knows where a pair came from:

========================  ==================================================================
column                    meaning
========================  ==================================================================
``prompt``                the conversation before the answers, ``list<struct<role, content>>``
``chosen``                the preferred answer turn(s), ``list<struct<role, content>>``
``rejected``              the other answer turn(s), same type
``source``                where the pair comes from (a ``source`` column, else the file name)
``chosen_score``          optional score of the chosen answer (float64, null when unknown)
``rejected_score``        optional score of the rejected answer
========================  ==================================================================

Layouts read (detected from the column names and types, see :func:`detect_layout`):

* ``plain``: ``prompt``, ``chosen``, ``rejected`` strings (RewardBench, UltraFeedback, HelpSteer2-style
  prompts whose earlier turns are marked ``<extra_id_1>User`` / ``<extra_id_1>Assistant``);
* ``messages``: ``chosen`` and ``rejected`` are whole conversations as message lists, the prompt being
  all but their last message (Skywork-Reward-Preference-80K);
* ``conversational``: ``prompt``, ``chosen``, ``rejected`` message lists (TRL's conversational format);
* ``hh``: ``chosen`` and ``rejected`` HH-RLHF transcripts (``\\n\\nHuman: ... \\n\\nAssistant: ...``);
* ``sharegpt``: ``conversations`` list of ``{from, value}`` plus ``chosen`` / ``rejected`` turns (LLaMA-Factory);
* ``rmb``: ``conversation_input`` messages plus ``chosen`` / ``reject`` structs with an ``answer`` (RMB);
* ``prompts``: a prompt column alone (string or messages), e.g. a benchmark's prompts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from skyshared.turns import HELPSTEER_MARK, parse_helpsteer_prompt

from skyfilter.frames import as_arrow, per_batch

__all__ = [
    "MESSAGE",
    "MESSAGES",
    "PAIR_SCHEMA",
    "FIELDS",
    "LAYOUTS",
    "ROLES",
    "SchemaError",
    "detect_layout",
    "resolve_layout",
    "expected_kinds",
    "to_pairs",
    "pair_table",
    "pair_sources",
    "match_texts",
    "turn_texts",
    "text_row",
    "parse_transcript",
    "parse_helpsteer_prompt",
]

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
MESSAGES = pa.list_(MESSAGE)
PAIR_SCHEMA = pa.schema(
    [
        ("prompt", MESSAGES),
        ("chosen", MESSAGES),
        ("rejected", MESSAGES),
        ("source", pa.string()),
        ("chosen_score", pa.float64()),
        ("rejected_score", pa.float64()),
    ]
)

#: What part of a pair is matched: the first user turn, every prompt turn, or every turn.
FIELDS = ("prompt", "conversation", "all")

_ROLE_ALIASES = {"human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant", "observation": "tool"}
#: The roles chat templates know; a turn of another role (sharegpt's ``function_call``, a typo) is kept as it is and
#: counted by ``skyfilter convert`` (``unknown_role``).
ROLES = ("system", "user", "assistant", "tool")


class SchemaError(ValueError):
    """A table does not have the columns or types a layout needs."""


# ---------------------------------------------------------------------------------------------- helpers


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t) or (pa.types.is_null(t))


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t)


def _is_message_list(t: pa.DataType, role: str = "role", content: str = "content") -> bool:
    if not _is_list(t) or not pa.types.is_struct(t.value_type):
        return False
    names = {t.value_type.field(i).name for i in range(t.value_type.num_fields)}
    return {role, content} <= names


def _column(table: pa.Table, name: str) -> pa.Array:
    col = table.column(name)
    if not isinstance(col, pa.ChunkedArray):
        return col
    return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()  # one chunk: not copied


def _as_string(arr: pa.Array, column: str) -> pa.Array:
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), pa.string())
    if not _is_string(arr.type):
        raise SchemaError(f"column {column!r} must hold strings, found {arr.type}")
    return arr.cast(pa.string()) if not pa.types.is_string(arr.type) else arr


def _lengths(lists: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False).astype(np.int64)


def _offsets(lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def _messages_from_flat(offsets: np.ndarray, roles: pa.Array, contents: pa.Array) -> pa.Array:
    values = pa.StructArray.from_arrays([roles, contents], fields=list(MESSAGE))
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values, type=MESSAGES)


def _normalize_roles(roles: pa.Array) -> pa.Array:
    roles = pc.utf8_lower(_as_string(roles, "role"))
    for alias, role in _ROLE_ALIASES.items():
        roles = pc.if_else(pc.equal(roles, alias), role, roles)
    return roles


def _messages(lists: pa.Array, column: str, role: str = "role", content: str = "content") -> pa.Array:
    """Any list of structs with a role and a content field, as canonical messages."""
    if pa.types.is_null(lists.type):
        return pa.nulls(len(lists), MESSAGES)
    if not _is_message_list(lists.type, role, content):
        raise SchemaError(f"column {column!r} must be a list of {{{role}, {content}}} messages, found {lists.type}")
    flat = lists.flatten()
    if isinstance(flat, pa.ChunkedArray):
        flat = flat.combine_chunks()
    contents = flat.field(content)
    if not _is_string(contents.type):
        raise SchemaError(f"column {column!r}: message {content!r} must be a string, found {contents.type}")
    return _messages_from_flat(
        _offsets(_lengths(lists)), _normalize_roles(flat.field(role)), _as_string(contents, column)
    )


def _single_turn(texts: pa.Array, role: str | pa.Array) -> pa.Array:
    """One message per row from a string column, of ``role`` (or each row's role in an array of them); a null
    string gives an empty list."""
    roles = pa.repeat(pa.scalar(role), len(texts)) if isinstance(role, str) else role
    if texts.null_count == 0:  # the texts as they are, not copied
        offsets, contents = np.arange(len(texts) + 1, dtype=np.int64), texts
    else:
        valid = pc.is_valid(texts).to_numpy(zero_copy_only=False)
        offsets, contents, roles = _offsets(valid.astype(np.int64)), texts.filter(pa.array(valid)), roles.filter(valid)
    return _messages_from_flat(offsets, roles, contents)


def _from_python(rows: list[list[dict] | None]) -> pa.Array:
    return pa.array(rows, type=MESSAGES)


def _last_turn(lists: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Splits message lists into (all but the last message, the last message)."""
    lengths = _lengths(lists)
    flat = lists.flatten()
    keep_prompt = np.ones(len(flat), dtype=bool)
    ends = _offsets(lengths)[1:]
    keep_prompt[ends[lengths > 0] - 1] = False
    prompt_lengths = np.maximum(lengths - 1, 0)
    prompt = _messages_from_flat(
        _offsets(prompt_lengths), flat.field("role").filter(keep_prompt), flat.field("content").filter(keep_prompt)
    )
    last = flat.filter(pa.array(~keep_prompt))
    answer = _messages_from_flat(_offsets((lengths > 0).astype(np.int64)), last.field("role"), last.field("content"))
    return prompt, answer


# --------------------------------------------------------------------------------------------- parsers

_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ \t]?")


def parse_transcript(text: str | None) -> list[dict] | None:
    """An HH-RLHF transcript (``\\n\\nHuman: ...\\n\\nAssistant: ...``) as messages."""
    if text is None:
        return None
    parts = _HH_TURN.split(text)
    messages = []
    if parts[0].strip():
        messages.append({"role": "user", "content": parts[0]})
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        messages.append({"role": "user" if speaker == "Human" else "assistant", "content": content})
    return messages


# --------------------------------------------------------------------------------------------- layouts


@dataclass(frozen=True)
class Layout:
    """A source layout: how to recognise it and how to convert it."""

    name: str
    detect: Callable[[pa.Schema], bool]
    convert: Callable[[pa.Table], tuple[pa.Array, pa.Array, pa.Array]]
    description: str
    #: The input columns the prompt, chosen and rejected turns come from (for error messages).
    columns: tuple[str, str, str] = ("prompt", "chosen", "rejected")


def _types(schema: pa.Schema) -> dict[str, pa.DataType]:
    return {f.name: f.type for f in schema}


def _plain(table: pa.Table) -> tuple[pa.Array, pa.Array, pa.Array]:
    prompt = _as_string(_column(table, "prompt"), "prompt")
    if pc.any(pc.match_substring(prompt, HELPSTEER_MARK)).as_py():
        prompts = _from_python([parse_helpsteer_prompt(p) for p in prompt.to_pylist()])
    else:
        prompts = _single_turn(prompt, "user")
    return (
        prompts,
        _single_turn(_as_string(_column(table, "chosen"), "chosen"), "assistant"),
        _single_turn(_as_string(_column(table, "rejected"), "rejected"), "assistant"),
    )


def _opens_with_prompt(lists: pa.Array) -> np.ndarray:
    """Per row, whether a message list opens with a turn that is not the assistant's (a whole conversation)."""
    lengths = _lengths(lists)
    first = np.zeros(len(lists), dtype=bool)
    starts = _offsets(lengths)[:-1][lengths > 0]
    roles = lists.flatten().field("role").take(pa.array(starts))
    first[lengths > 0] = pc.fill_null(pc.not_equal(roles, "assistant"), True).to_numpy(zero_copy_only=False)
    return first


def _conversational(table: pa.Table) -> tuple[pa.Array, pa.Array, pa.Array]:
    col = _column(table, "prompt")
    prompt = _messages(col, "prompt") if _is_list(col.type) else _single_turn(_as_string(col, "prompt"), "user")
    chosen, rejected = (_messages(_column(table, c), c) for c in ("chosen", "rejected"))
    whole = np.flatnonzero(_opens_with_prompt(chosen) & _opens_with_prompt(rejected))
    if not len(whole):
        return prompt, chosen, rejected
    # Sides that hold the whole conversation (HuggingFaceH4/ultrafeedback_binarized: a prompt string beside them):
    # split as whole conversations are, the prompt column not put before them again (TRL's maybe_extract_prompt)
    rows = pa.array(whole)
    return _with_rows((prompt, chosen, rejected), whole, _split_pair(chosen.take(rows), rejected.take(rows)))


def _with_rows(arrays: tuple[pa.Array, ...], rows: np.ndarray, parts) -> tuple[pa.Array, pa.Array, pa.Array]:
    """``arrays`` with their ``rows`` replaced by ``parts`` (one array of ``len(rows)`` values each, in order)."""
    where = np.arange(len(arrays[0]))
    where[rows] = len(arrays[0]) + np.arange(len(rows))
    return tuple(  # type: ignore[return-value]
        pa.concat_arrays([array, part]).take(pa.array(where)) for array, part in zip(arrays, parts, strict=True)
    )


def _same_turns(a: pa.Array, b: pa.Array) -> np.ndarray:
    """Per row, whether two message-list arrays hold the same turns (roles and contents; a null content equals a
    null content)."""
    lengths = _lengths(a)
    same = lengths == _lengths(b)
    rows = np.flatnonzero(same)
    if len(rows) < len(same):
        a, b, lengths = a.take(pa.array(rows)), b.take(pa.array(rows)), lengths[rows]
    fa, fb = a.flatten(), b.flatten()
    contents = pc.fill_null(pc.equal(fa.field("content"), fb.field("content")),
                            pc.and_(pc.is_null(fa.field("content")), pc.is_null(fb.field("content"))))  # fmt: skip
    equal = pc.and_(pc.fill_null(pc.equal(fa.field("role"), fb.field("role")), False), contents)
    unequal = np.concatenate([[0], np.cumsum(~equal.to_numpy(zero_copy_only=False))])
    ends = _offsets(lengths)
    same[rows] = unequal[ends[1:]] == unequal[ends[:-1]]
    return same


def _split_pair(chosen: pa.Array, rejected: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Whole conversations (message lists) as prompt, chosen and rejected: the prompt is the turns both sides share
    before their last, each side's answer the turns after it. Where the sides agree up to their last turn (almost
    always) that is the last turn of each; where they part earlier (an HH-RLHF transcript with a turn more on one
    side), the turns after the common ones are the answer, as TRL's ``extract_prompt`` reads them: the rejected
    answer is never set against a context it did not answer."""
    prompt, chosen_turn = _last_turn(chosen)
    rejected_prompt, rejected_turn = _last_turn(rejected)
    parted = np.flatnonzero(~_same_turns(prompt, rejected_prompt) & (_lengths(chosen) > 0) & (_lengths(rejected) > 0))
    if not len(parted):
        return prompt, chosen_turn, rejected_turn
    rows = pa.array(parted)
    fixed: list[list] = [[], [], []]
    for c, r in zip(chosen.take(rows).to_pylist(), rejected.take(rows).to_pylist(), strict=True):
        shared = 0
        while shared < min(len(c), len(r)) - 1 and c[shared] == r[shared]:
            shared += 1
        for out, turns in zip(fixed, (c[:shared], c[shared:], r[shared:]), strict=True):
            out.append(turns)
    return _with_rows((prompt, chosen_turn, rejected_turn), parted, [_from_python(part) for part in fixed])


def _whole_conversations(table: pa.Table) -> tuple[pa.Array, pa.Array, pa.Array]:
    return _split_pair(_messages(_column(table, "chosen"), "chosen"), _messages(_column(table, "rejected"), "rejected"))


def _hh(table: pa.Table) -> tuple[pa.Array, pa.Array, pa.Array]:
    chosen = _from_python([parse_transcript(t) for t in _as_string(_column(table, "chosen"), "chosen").to_pylist()])
    rejected = _from_python(
        [parse_transcript(t) for t in _as_string(_column(table, "rejected"), "rejected").to_pylist()]
    )
    return _split_pair(chosen, rejected)


def _answer_struct(table: pa.Table, column: str, text_field: str, role_field: str | None = None) -> pa.Array:
    """A struct column holding one answer turn (sharegpt turns, RMB answers) as one message: the assistant's, or
    where the struct has a ``role_field`` the role it names (a sharegpt ``chosen`` turn ``from`` the human is a side
    without an answer, counted as such, not read as the assistant's)."""
    arr = _column(table, column)
    if not pa.types.is_struct(arr.type) or arr.type.get_field_index(text_field) < 0:
        raise SchemaError(f"column {column!r} must be a struct with a {text_field!r} field, found {arr.type}")
    texts = pc.if_else(pc.is_valid(arr), _as_string(pc.struct_field(arr, text_field), f"{column}.{text_field}"),
                       pa.scalar(None, pa.string()))  # fmt: skip
    if role_field is None or arr.type.get_field_index(role_field) < 0:
        return _single_turn(texts, "assistant")
    return _single_turn(texts, pc.fill_null(_normalize_roles(pc.struct_field(arr, role_field)), "assistant"))


def _sharegpt(table: pa.Table) -> tuple[pa.Array, pa.Array, pa.Array]:
    prompt = _messages(_column(table, "conversations"), "conversations", role="from", content="value")
    return (
        prompt,
        _answer_struct(table, "chosen", "value", "from"),
        _answer_struct(table, "rejected", "value", "from"),
    )


def _rmb(table: pa.Table) -> tuple[pa.Array, pa.Array, pa.Array]:
    return (
        _messages(_column(table, "conversation_input"), "conversation_input"),
        _answer_struct(table, "chosen", "answer"),
        _answer_struct(table, "reject", "answer"),
    )


def _prompts_only(table: pa.Table) -> tuple[pa.Array, pa.Array, pa.Array]:
    col = _column(table, "prompt")
    prompt = _messages(col, "prompt") if _is_list(col.type) else _single_turn(_as_string(col, "prompt"), "user")
    empty = pa.nulls(len(table), MESSAGES)
    return prompt, empty, empty


def _has(schema: pa.Schema, *names: str) -> bool:
    return all(n in schema.names for n in names)


LAYOUTS: tuple[Layout, ...] = (
    Layout(
        "conversational",
        lambda s: (
            _has(s, "prompt", "chosen", "rejected") and (_is_list(_types(s)["prompt"]) or _is_list(_types(s)["chosen"]))
        ),  # fmt: skip
        _conversational,
        "prompt, chosen, rejected message lists (TRL conversational; a prompt string beside chosen and rejected "
        "that hold the whole conversation, as HuggingFaceH4/ultrafeedback_binarized)",
    ),
    Layout(
        "plain",
        lambda s: _has(s, "prompt", "chosen", "rejected") and not _is_list(_types(s)["chosen"]),
        _plain,
        "prompt, chosen, rejected strings (RewardBench, UltraFeedback, HelpSteer2)",
    ),
    Layout(
        "messages",
        lambda s: _has(s, "chosen", "rejected") and _is_list(_types(s)["chosen"]),
        _whole_conversations,
        "chosen, rejected whole conversations as message lists (Skywork-Reward-Preference-80K)",
        ("chosen", "chosen", "rejected"),
    ),
    Layout(
        "hh",
        lambda s: _has(s, "chosen", "rejected"),
        _hh,
        "chosen, rejected HH-RLHF transcripts",
        ("chosen", "chosen", "rejected"),
    ),
    Layout(
        "sharegpt",
        lambda s: _has(s, "conversations", "chosen", "rejected"),
        _sharegpt,
        "sharegpt conversations with chosen / rejected turns (LLaMA-Factory)",
        ("conversations", "chosen", "rejected"),
    ),
    Layout(
        "rmb",
        lambda s: _has(s, "conversation_input", "chosen", "reject"),
        _rmb,
        "conversation_input with chosen / reject answers (RMB)",
        ("conversation_input", "chosen", "reject"),
    ),
    Layout("prompts", lambda s: _has(s, "prompt"), _prompts_only, "a prompt column alone", ("prompt",) * 3),
)


_TURNS = ("string", "message list")
#: The JSON kinds (see ``skyshared.jsonrows.kind_of``) each layout reads in each of its columns.
_KINDS: dict[str, dict[str, tuple[str, ...]]] = {
    "conversational": {"prompt": _TURNS, "chosen": ("message list",), "rejected": ("message list",)},
    "plain": dict.fromkeys(("prompt", "chosen", "rejected"), ("string",)),
    "messages": dict.fromkeys(("chosen", "rejected"), ("message list",)),
    "hh": dict.fromkeys(("chosen", "rejected"), ("string",)),
    "sharegpt": {"conversations": ("message list",), "chosen": ("object",), "rejected": ("object",)},
    "rmb": {"conversation_input": ("message list",), "chosen": ("object",), "reject": ("object",)},
    "prompts": {"prompt": _TURNS},
}
assert set(_KINDS) == {lay.name for lay in LAYOUTS}


def expected_kinds(
    columns: list[str], layout: str | None = None, prompt_column: str | None = None
) -> dict[str, tuple[str, ...]]:
    """The JSON kinds a row's values may have in the columns a layout reads, for a file with these columns: those
    of the layout named, else of every layout that reads the same columns as the first whose columns the file
    has (plain and conversational pairs: ``prompt``, ``chosen``, ``rejected`` as strings or message lists).
    A value of another kind makes its row unreadable as the layout (``skyshared.jsonrows``)."""
    if prompt_column is not None:
        return {prompt_column: _TURNS}
    if layout is not None:
        return dict(_KINDS.get(layout, {}))
    ordered = sorted(LAYOUTS, key=lambda lay: lay.name not in ("sharegpt", "rmb"))
    first = next((lay for lay in ordered if set(_KINDS[lay.name]) <= set(columns)), None)
    if first is None:
        return {}
    order = ("string", "message list", "object")
    out: dict[str, tuple[str, ...]] = {}
    for kinds in _KINDS.values():
        if kinds.keys() == _KINDS[first.name].keys():
            for column, accepted in kinds.items():
                out[column] = tuple(k for k in order if k in accepted or k in out.get(column, ()))
    return out


def detect_layout(schema: pa.Schema, where: str = "input") -> Layout:
    """The first layout whose columns the schema has; sharegpt and RMB are checked before plain pairs."""
    ordered = sorted(LAYOUTS, key=lambda lay: lay.name not in ("sharegpt", "rmb"))
    for layout in ordered:
        if layout.detect(schema):
            return layout
    known = "; ".join(f"{lay.name}: {lay.description}" for lay in LAYOUTS)
    raise SchemaError(
        f"{where}: cannot tell the layout from columns {schema.names}. Known layouts: {known}. "
        "Rename the columns, or name the prompt column with --prompt-column."
    )


def resolve_layout(schema: pa.Schema, layout: str | None = None, where: str = "input") -> Layout:
    """The layout named ``layout``, or the one detected from the schema."""
    if layout is None:
        return detect_layout(schema, where)
    by_name = {lay.name: lay for lay in LAYOUTS}
    if layout not in by_name:
        raise SchemaError(f"unknown layout {layout!r}; known: {sorted(by_name)}")
    missing = [c for c in dict.fromkeys(by_name[layout].columns) if c not in schema.names]
    if missing:
        raise SchemaError(f"{where}: the {layout} layout reads column(s) {missing}, which it lacks; its columns are "
                          f"{schema.names} (without --layout the layout is found from them)")  # fmt: skip
    return by_name[layout]


def _scores(table: pa.Table) -> tuple[pa.Array, pa.Array]:
    n = len(table)
    for chosen, rejected in (("chosen_score", "rejected_score"), ("score_chosen", "score_rejected")):
        if _has(table.schema, chosen, rejected):
            return _column(table, chosen).cast(pa.float64()), _column(table, rejected).cast(pa.float64())
    if "metadata" in table.schema.names and pa.types.is_struct(table.schema.field("metadata").type):
        meta = _column(table, "metadata")
        if meta.type.get_field_index("score_chosen") >= 0 and meta.type.get_field_index("score_rejected") >= 0:
            return (
                pc.struct_field(meta, "score_chosen").cast(pa.float64()),
                pc.struct_field(meta, "score_rejected").cast(pa.float64()),
            )
    return pa.nulls(n, pa.float64()), pa.nulls(n, pa.float64())


#: Words in a column's name that make it look like an answer (see :func:`unread_answers`).
ANSWER_WORDS = ("chosen", "rejected", "response", "answer", "completion", "output")


def unread_answers(schema: pa.Schema, layout: Layout) -> list[str]:
    """The columns that look like answers in a file the ``prompts`` layout reads as prompts alone (Auto-J's
    ``response 1``, an audit file's ``chosen_response``): as pairs, such a file would have no answers."""
    if layout.name != "prompts":
        return []
    return [n for n in schema.names if any(w in n.lower() for w in ANSWER_WORDS)]


#: Words of column names that may say, row by row, which of two answers is better.
LABEL_WORDS = ("label", "preference", "winner", "better", "annotator")


def answers_advice(schema: pa.Schema) -> str:
    """How to make pairs of a file whose answers are in other columns (:func:`unread_answers`): each row's better
    answer as ``chosen``; a column that may say which one is better is named, since a plain rename would keep the
    wrong order where it says the second."""
    labels = [n for n in schema.names if any(w in n.lower() for w in LABEL_WORDS)]
    said = (f" ({labels} may say which, row by row: where the second is better a plain rename of the columns "
            "would swap the pair, and ties are no pair)" if labels else "")  # fmt: skip
    return f"put each row's better answer in a chosen column and the other in rejected{said}"


def refuse_unread_answers(schema: pa.Schema, layout: str | None, prompt_column: str | None) -> None:
    """A :class:`SchemaError` for a file that would be read as prompts alone (no layout or prompt column named)
    while its other columns look like answers (:func:`unread_answers`): as pairs it would have no answers."""
    if layout is not None or prompt_column is not None:
        return
    if unread := unread_answers(schema, detect_layout(schema)):
        raise SchemaError(
            f"columns {unread} look like answers, but without chosen and rejected columns the rows are read as "
            f"prompts alone (layout prompts) and the pairs would have no answers: {answers_advice(schema)}, or read "
            "the prompts alone with layout 'prompts' (--layout prompts)"
        )


def to_pairs(data, source: str = "unknown", layout: str | None = None, prompt_column: str | None = None):
    """Converts rows of any known layout into the canonical pair table (:data:`PAIR_SCHEMA`).

    ``data``: any kind :func:`skyfilter.frames.as_arrow` takes; the pairs are of the same kind (a
    ``RecordBatchReader`` is converted batch by batch as the result is read). ``layout`` forces a layout by name;
    ``prompt_column`` reads the prompt from that column (string or messages) and leaves chosen / rejected empty.
    ``source`` fills the ``source`` column where the table has none. A file read as prompts alone whose other
    columns look like answers (:func:`unread_answers`) is refused unless ``layout="prompts"`` says so.
    """
    table, restore = as_arrow(data, stream=True)
    refuse_unread_answers(table.schema, layout, prompt_column)
    if isinstance(table, pa.RecordBatchReader):
        return restore(per_batch(table, lambda batch, _: pair_table(batch, source, layout, prompt_column), PAIR_SCHEMA))
    return restore(pair_table(table, source, layout, prompt_column))


def pair_table(
    table: pa.Table | pa.RecordBatch,
    source: str = "unknown",
    layout: str | None = None,
    prompt_column: str | None = None,
) -> pa.Table:
    """:func:`to_pairs` of a pyarrow table or batch, as a table: what the steps call on each batch they read."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if prompt_column is not None:
        if prompt_column not in table.schema.names:
            raise SchemaError(f"no column {prompt_column!r}; columns are {table.schema.names}")
        prompt, chosen, rejected = _prompts_only(table.select([prompt_column]).rename_columns(["prompt"]))
    else:
        prompt, chosen, rejected = resolve_layout(table.schema, layout).convert(table)
    sources = pair_sources(table, source)
    chosen_score, rejected_score = _scores(table)
    return pa.Table.from_arrays([prompt, chosen, rejected, sources, chosen_score, rejected_score], schema=PAIR_SCHEMA)


def pair_sources(table: pa.Table | pa.RecordBatch, source: str = "unknown") -> pa.Array | pa.ChunkedArray:
    """The ``source`` column of :func:`to_pairs`: the table's own string ``source`` column, ``source`` where it
    is null or where the table has none."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if "source" in table.schema.names and _is_string(table.schema.field("source").type):
        return pc.fill_null(_as_string(_column(table, "source"), "source"), source)
    return pa.repeat(pa.scalar(source), len(table))


def match_texts(pairs: pa.Table, fields: str = "prompt") -> tuple[pa.Array, pa.Array | None]:
    """The texts to match for each pair, as ``(texts, bounds)`` for the matcher.

    ``prompt``: the first user turn (one text per row, ``bounds`` is None; a row without one has a
    null text). ``conversation``: every turn of the prompt. ``all``: every turn of prompt, chosen and
    rejected. For the last two, row ``r`` owns ``texts[bounds[r]:bounds[r + 1]]``.
    """
    if fields not in FIELDS:
        raise ValueError(f"fields must be one of {FIELDS}, got {fields!r}")
    prompt = _column(pairs, "prompt")
    if fields == "prompt":
        flat = prompt.flatten()  # skips what a null row holds underneath; so do these parents (list_parent_indices not)
        lengths = _lengths(prompt)
        is_user = pc.fill_null(pc.equal(flat.field("role"), "user"), False).to_numpy(zero_copy_only=False)
        contents = flat.field("content")
        if (lengths == 1).all() and is_user.all():
            return contents, None  # one message a row, each the user's: the texts as they are, not copied
        parents = np.repeat(np.arange(len(prompt)), lengths)
        # Each row's first user message: the parents run in order, so where the users' parent changes (no sort).
        users = np.flatnonzero(is_user)
        owner = parents[users]
        first = np.ones(len(owner), dtype=bool)
        first[1:] = owner[1:] != owner[:-1]
        take = np.full(len(pairs), -1, dtype=np.int64)
        take[owner[first]] = users[first]
        return contents.take(pa.array(take, mask=take < 0)), None
    return turn_texts(pairs, ["prompt"] if fields == "conversation" else ["prompt", "chosen", "rejected"])


def text_row(index: int, bounds: pa.Array | None) -> int:
    """The row that owns ``texts[index]`` (see :func:`turn_texts`); with no bounds, text i is row i."""
    return index if bounds is None else int(np.searchsorted(bounds.to_numpy(), index, side="right") - 1)


def turn_texts(pairs: pa.Table, columns: list[str]) -> tuple[pa.Array, pa.Array]:
    """Every turn of the given message columns, row by row, as ``(texts, bounds)``: row ``r`` owns
    ``texts[bounds[r]:bounds[r + 1]]``, its turns of ``columns[0]`` first, then of ``columns[1]``, ..."""
    parts = [_column(pairs, c) for c in columns]
    lengths = [_lengths(p) for p in parts]
    bounds = _offsets(np.sum(lengths, axis=0))
    contents = [p.flatten().field("content") for p in parts]
    if len(parts) == 1:
        return contents[0], pa.array(bounds)
    # Interleave the parts row by row.
    dest = []
    before = np.zeros(len(pairs), dtype=np.int64)
    for length in lengths:
        parent = np.repeat(np.arange(len(pairs)), length)
        within = np.arange(len(parent)) - _offsets(length)[parent]
        dest.append(bounds[parent] + before[parent] + within)
        before += length
    order = np.empty(int(bounds[-1]), dtype=np.int64)
    order[np.concatenate(dest)] = np.arange(int(bounds[-1]))
    return pa.concat_arrays(contents).take(pa.array(order)), pa.array(bounds)
