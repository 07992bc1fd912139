"""Your own preference pairs, in any layout skyfilter reads (:mod:`skyfilter.schema`: plain or conversational
``prompt`` / ``chosen`` / ``rejected``, whole conversations, HH-RLHF transcripts, sharegpt, RMB): a recipe's
source of data that no published adapter describes. The layout is found from the columns, as ``skyfilter
convert`` finds it; the pair's own ``chosen_score`` / ``rejected_score`` (or UltraFeedback's) are kept.

Dropped rows: ``empty_prompt`` (no prompt turn), ``empty_response`` (a side without a non-blank assistant answer
last), ``identical_responses`` (the two sides the same).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from skyfilter.adapters._base import AdapterError, Converted, Drops, pairs_table
from skyfilter.schema import SchemaError, pair_table, refuse_unread_answers

#: No fixed columns: the layout's (every column is read, as the layout finds them).
COLUMNS: tuple[str, ...] = ()


def _answered(side: list[dict] | None) -> bool:
    return bool(side) and side[-1]["role"] == "assistant" and bool((side[-1]["content"] or "").strip())


def convert(table: pa.Table, source: str, generator: str | None = None) -> Converted:
    try:
        refuse_unread_answers(table.schema, None, None)
        pairs = pair_table(table, source)
    except SchemaError as e:
        raise AdapterError(f"the pairs adapter needs column(s) of a pair layout: {e}") from None
    prompt, chosen, rejected = (pairs.column(c).to_pylist() for c in ("prompt", "chosen", "rejected"))
    drops = Drops(table)
    drops.drop(np.array([not p for p in prompt], dtype=bool), "empty_prompt")
    drops.drop(np.array([not (_answered(c) and _answered(r)) for c, r in zip(chosen, rejected, strict=True)]),
               "empty_response")  # fmt: skip
    drops.drop(np.array([c == r for c, r in zip(chosen, rejected, strict=True)], dtype=bool), "identical_responses")
    rows = np.flatnonzero(drops.alive)
    kept = pairs.take(pa.array(rows))
    out = pairs_table(source, kept.column("prompt").combine_chunks(), kept.column("chosen").combine_chunks(),
                      kept.column("rejected").combine_chunks(), rows, chosen_score=kept.column("chosen_score"),
                      rejected_score=kept.column("rejected_score"), generator=generator)  # fmt: skip
    return drops.result(out, len(rows))
