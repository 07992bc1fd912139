"""``skyfilter convert``: pairs of any known layout (HH-RLHF transcripts, sharegpt, RMB, TRL's formats, ...) written
as the canonical pair table (:data:`skyfilter.schema.PAIR_SCHEMA`: prompt, chosen and rejected message lists, the
source, the two scores), which ``skyrm train``, ``skyrm score`` and every skyfilter command read: the
command line's :func:`skyfilter.to_pairs`.

Every input row is a pair of the output or a bad row (``bad_rows``, rows that cannot be read as the layout); pairs
with a side that does not end in an answer (an HH-RLHF transcript without an Assistant turn) or ends in a blank one
are written and counted, for the trainer drops them (``no_answer``, ``empty_answer``); so are pairs whose prompt has
no text (null, empty or blank), which train as answers alone, and pairs with a turn of a role chat templates do not
know (``unknown_role``: not system, user, assistant or tool once sharegpt's ``human`` / ``gpt`` / ``observation``
are read as such), which a template renders as it is or refuses.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from skyfilter.io import (
    AtomicWriters,
    RowReading,
    check_outputs,
    input_specs,
    iter_batches,
    open_sources,
    write_bad_rows,
)
from skyfilter.schema import PAIR_SCHEMA, ROLES, SchemaError, pair_table, refuse_unread_answers, resolve_layout

__all__ = ["ConvertReport", "run_convert"]


@dataclass
class ConvertReport:
    """What a conversion did, every row accounted for: rows = pairs + bad_rows."""

    inputs: list[str]
    layouts: dict[str, str] = field(default_factory=dict)
    rows: int = 0
    pairs: int = 0
    without_answer: int = 0
    blank_answer: int = 0
    without_prompt: int = 0
    #: Pairs with a turn of a role outside :data:`skyfilter.schema.ROLES`, and the first such roles seen.
    unknown_role: int = 0
    unknown_roles: list[str | None] = field(default_factory=list)
    bad_rows: int = 0
    outputs: dict[str, str | None] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"


def _unanswered(pairs: pa.Table) -> tuple[int, int]:
    """Pairs with a side that does not end in an assistant turn (none at all, or a user turn alone), and pairs
    with a side whose final answer is blank (empty or white space)."""
    missing = np.zeros(pairs.num_rows, dtype=bool)
    blank = np.zeros(pairs.num_rows, dtype=bool)
    for side in ("chosen", "rejected"):
        lists = pairs.column(side).combine_chunks()
        lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
        ends = pa.array(np.cumsum(lengths)[lengths > 0] - 1)
        last = lists.flatten().take(ends)
        answered = np.zeros(pairs.num_rows, dtype=bool)
        answered[lengths > 0] = pc.fill_null(pc.equal(last.field("role"), "assistant"), False).to_numpy(
            zero_copy_only=False
        )
        empty = np.zeros(pairs.num_rows, dtype=bool)
        text = pc.utf8_trim_whitespace(pc.fill_null(last.field("content"), ""))
        empty[lengths > 0] = pc.equal(pc.utf8_length(text), 0).to_numpy(zero_copy_only=False)
        missing |= ~answered
        blank |= answered & empty
    return int(missing.sum()), int((blank & ~missing).sum())


def _without_prompt(pairs: pa.Table) -> int:
    """Pairs whose prompt has no text (null, no turn, or blank turns)."""
    prompts = pairs.column("prompt").combine_chunks()
    texts = pc.utf8_length(pc.utf8_trim_whitespace(pc.fill_null(prompts.flatten().field("content"), "")))
    chars = np.bincount(pc.list_parent_indices(prompts).to_numpy(), weights=texts.to_numpy(), minlength=len(prompts))
    return int((chars == 0).sum())


#: How many of the unknown roles the report names.
_SHOWN_ROLES = 20


def _unknown_roles(pairs: pa.Table) -> tuple[int, list[str | None]]:
    """Pairs with a turn whose role is not one chat templates know (:data:`ROLES`), and those roles."""
    odd = np.zeros(pairs.num_rows, dtype=bool)
    seen: set[str | None] = set()
    for side in ("prompt", "chosen", "rejected"):
        lists = pairs.column(side).combine_chunks()
        roles = lists.flatten().field("role")
        unknown = pc.invert(pc.fill_null(pc.is_in(roles, pa.array(ROLES)), False))
        if pc.any(unknown).as_py():
            odd[pc.list_parent_indices(lists).filter(unknown).to_numpy()] = True
            seen.update(pc.unique(roles.filter(unknown)).to_pylist())
    return int(odd.sum()), _in_order(seen)


def _in_order(roles: set[str | None]) -> list[str | None]:
    """The roles sorted, a null role first, the first :data:`_SHOWN_ROLES` of them."""
    return sorted(roles, key=lambda r: (r is not None, r or ""))[:_SHOWN_ROLES]


def run_convert(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    out: str,
    *,
    report: str | None = None,
    bad_rows: str | None = None,
    split: str | None = None,
    layout: str | None = None,
    prompt_column: str | None = None,
    allow_empty: bool = False,
    batch_rows: int = 65_536,
    progress: bool | None = None,
) -> ConvertReport:
    """Writes the pairs of ``inputs`` to ``out`` (parquet, arrow or jsonl) in the canonical pair table, a batch at
    a time; ``layout`` forces the layout, ``prompt_column`` reads prompts alone from that column. A file read as
    prompts alone whose other columns look like answers is refused (``layout="prompts"`` reads it so)."""
    inputs = input_specs(inputs)
    check_outputs(inputs, {"--out": out, "--bad-rows": bad_rows}, {"--report": report})
    reading = RowReading(layout, prompt_column, keep_bad=bad_rows is not None, allow_empty=allow_empty)
    sources = open_sources(inputs, split, (), reading)
    result = ConvertReport(inputs=[s.name for s in sources])
    for s in sources:
        try:
            refuse_unread_answers(s.schema, layout, prompt_column)
            name = "prompt column" if prompt_column else resolve_layout(s.schema, layout, s.name).name
        except SchemaError as e:
            raise SchemaError(f"{s.name}: {e}") from None
        result.layouts[s.name] = name
    with AtomicWriters({"out": out, "bad_rows": bad_rows}) as writers:
        writers.set_schema("out", PAIR_SCHEMA)
        result.bad_rows = write_bad_rows(writers, "bad_rows", sources)
        for s, _, batch in iter_batches(sources, batch_rows, "converting", progress):
            try:
                pairs = pair_table(batch, s.name, layout, prompt_column)
            except SchemaError as e:
                raise SchemaError(f"{s.name}: {e}") from None
            result.pairs += batch.num_rows
            result.without_prompt += _without_prompt(pairs)
            odd, roles = _unknown_roles(pairs)
            result.unknown_role += odd
            result.unknown_roles = _in_order(set(result.unknown_roles).union(roles))
            if not prompt_column:
                without, blank = _unanswered(pairs)
                result.without_answer += without
                result.blank_answer += blank
            for piece in pairs.to_batches():
                writers.write("out", piece)
        result.rows = result.pairs + result.bad_rows
        result.outputs = {"out": out, "bad_rows": bad_rows, "report": report}
        if report is not None:
            writers.write_text(report, result.to_json())
    return result
