"""OffsetBias (``NCSOFT/offsetbias``, split ``train``, 8,504 rows): pairs built to counter judge biases.

Layout read (the dataset card; ``train.jsonl``)::

    instruction   string
    output_1      string
    output_2      string
    label         int      1 or 2: the better output (the string "1" / "2", as EvalBiasBench writes it, too)

chosen = ``output_{label}``, rejected = the other. Skywork-Reward uses every pair.

Dropped rows: ``bad_label`` (not 1 or 2), ``empty_prompt``, ``empty_response``, ``identical_responses``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from skyfilter.adapters._base import (
    AdapterError,
    Converted,
    Drops,
    blank,
    column,
    pairs_table,
    preferred,
    require,
    strings,
    turn,
)

COLUMNS = ("instruction", "output_1", "output_2", "label")


def convert(table: pa.Table, source: str, generator: str | None = None) -> Converted:
    require(table, "offsetbias", COLUMNS)
    instruction, one, two = strings(table, "instruction"), strings(table, "output_1"), strings(table, "output_2")
    label = column(table, "label")
    kinds = (pa.types.is_integer, pa.types.is_floating, pa.types.is_string, pa.types.is_large_string)
    if not any(is_kind(label.type) for is_kind in kinds):
        raise AdapterError(f"column 'label' must hold 1 or 2, found {label.type}")
    label = pc.cast(label, pa.string())
    first = pc.fill_null(pc.equal(label, "1"), False).to_numpy(zero_copy_only=False)
    second = pc.fill_null(pc.equal(label, "2"), False).to_numpy(zero_copy_only=False)
    drops = Drops(table)
    drops.drop(~(first | second), "bad_label")
    drops.drop(blank(instruction), "empty_prompt")
    drops.drop(blank(one) | blank(two), "empty_response")
    drops.drop(pc.fill_null(pc.equal(one, two), False).to_numpy(zero_copy_only=False), "identical_responses")

    rows = np.flatnonzero(drops.alive)
    chosen, rejected = preferred(drops.alive, first[rows], one, two)
    pairs = pairs_table(
        source, turn(instruction.filter(pa.array(drops.alive)), "user"), chosen, rejected, rows, generator=generator
    )
    return drops.result(pairs, len(rows))
