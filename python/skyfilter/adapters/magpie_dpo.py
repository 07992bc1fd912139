"""The Magpie DPO sets (``Magpie-Align/Magpie-Pro-DPO-100K-v0.1``, ``Magpie-Align/Magpie-Air-DPO-100K-v0.1``,
``Magpie-Align/Magpie-Llama-3.1-Pro-DPO-100K-v0.1``; split ``train``, 98,000 rows each): instructions with five
sampled responses scored by ArmoRM; chosen = the best-scored response, rejected = the worst.

Layout read (the Pro and Air cards' ``dataset_info``, and magpie-align/magpie ``data_po/process_po.ipynb``, which
builds chosen / rejected as the argmax / argmin of the scores; the Llama-3.1 card confirms ``task_category``,
``chosen`` and ``rejected``, and its ``rewards_armorm`` is assumed to be laid out as in the other two)::

    task_category    string                          one of MAGPIE_CATEGORIES
    rewards_armorm   list<struct<score: float64>>    ArmoRM scores of the five responses
    chosen           list<struct<content, role>>     [user instruction, best response]
    rejected         list<struct<content, role>>     [user instruction, worst response]

Rows from before the pairs were built (Magpie's ``example_instructions_5res_armorm.json``: ``instruction`` and the
five ``responses``, no ``chosen`` / ``rejected``) are paired the way the notebook does: the first best-scored and
the first worst-scored response. (``uuid``, the generation settings and the other labels are not read.) The pair's
``score`` is the mean of the five ArmoRM scores, the score Skywork-Reward ranks Magpie prompts by;
``chosen_score`` / ``rejected_score`` are the best and worst of them; ``generator`` is the recipe's label for the
set (the per-generator offsets use it).

Dropped rows: ``missing_score`` (no scores, or a null among them), ``missing_responses`` (rows without pairs:
no responses, or not one score per response), ``unknown_category``, ``empty_prompt``,
``empty_response``, ``identical_responses`` (chosen and rejected say the same: no preference).
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
    contents,
    messages,
    pairs_table,
    require,
    strings,
)
from skyfilter.schema import SchemaError, pair_table

COLUMNS = ("task_category", "rewards_armorm", "chosen", "rejected")
#: What rows from before the pairs were built have instead of ``chosen`` / ``rejected``.
UNPAIRED_COLUMNS = ("task_category", "rewards_armorm", "instruction", "responses")

#: Magpie's task categories, as its sets spell them.
MAGPIE_CATEGORIES = (
    "Information seeking", "Reasoning", "Planning", "Editing", "Coding & Debugging", "Math", "Role playing",
    "Data analysis", "Creative writing", "Advice seeking", "Brainstorming", "Others",
)  # fmt: skip


def known_categories(categories: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.is_in(categories, pa.array(MAGPIE_CATEGORIES)), False).to_numpy(zero_copy_only=False)


def _score_lists(table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, max, min) of each row's ArmoRM scores; NaN where a row has none or a null one."""
    lists = column(table, "rewards_armorm")
    item = lists.type.value_type if pa.types.is_list(lists.type) or pa.types.is_large_list(lists.type) else None
    if item is None or not (pa.types.is_struct(item) and item.get_field_index("score") >= 0):
        raise AdapterError(f"column 'rewards_armorm' must be a list of {{score}} structs, found {lists.type}")
    scores = pc.struct_field(pc.list_flatten(lists), "score").cast(pa.float64()).fill_null(np.nan)
    values = scores.to_numpy(zero_copy_only=False)
    lengths = pc.list_value_length(lists).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    n = len(lengths)
    mean, high, low = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    some = lengths > 0
    if len(values):  # rows without scores own no values, so each segment runs to the next listed start
        mean[some] = np.add.reduceat(values, starts[some]) / lengths[some]
        high[some] = np.maximum.reduceat(values, starts[some])
        low[some] = np.minimum.reduceat(values, starts[some])
    return mean, high, low


def _pairs_from_responses(table: pa.Table, source: str) -> tuple[pa.Table, np.ndarray]:
    """chosen / rejected from the first best- and worst-scored of the ``responses`` (process_po.ipynb), and which
    rows cannot be paired (no responses, or not one score per response)."""
    instructions = strings(table, "instruction").to_pylist()
    responses = column(table, "responses").to_pylist()
    scores = column(table, "rewards_armorm").to_pylist()
    chosen, rejected, unusable = [], [], []
    for question, answers, items in zip(instructions, responses, scores, strict=True):
        values = [item.get("score") if item else None for item in items or []]
        if not answers or len(answers) != len(values) or None in values:
            chosen.append([])
            rejected.append([])
            unusable.append(True)
            continue
        best, worst = values.index(max(values)), values.index(min(values))  # the first on ties
        chosen.append([{"role": "user", "content": question}, {"role": "assistant", "content": answers[best]}])
        rejected.append([{"role": "user", "content": question}, {"role": "assistant", "content": answers[worst]}])
        unusable.append(False)
    pairs = pair_table(pa.table({"chosen": messages(chosen), "rejected": messages(rejected)}), source, "messages")
    return pairs, np.array(unusable, dtype=bool)


def convert(table: pa.Table, source: str, generator: str | None = None) -> Converted:
    paired = all(c in table.schema.names for c in ("chosen", "rejected"))
    require(table, "magpie-dpo", COLUMNS if paired else UNPAIRED_COLUMNS)
    category = strings(table, "task_category")
    mean, high, low = _score_lists(table)
    unusable = np.zeros(table.num_rows, dtype=bool)
    try:
        if paired:
            pairs = pair_table(table.select(["chosen", "rejected"]), source=source, layout="messages")
        else:
            pairs, unusable = _pairs_from_responses(table, source)
    except SchemaError as e:
        raise AdapterError(str(e)) from None
    drops = Drops(table)
    drops.drop(np.isnan(mean), "missing_score")
    drops.drop(unusable, "missing_responses")
    drops.drop(~known_categories(category), "unknown_category")
    chosen, rejected = contents(pairs.column("chosen")), contents(pairs.column("rejected"))
    drops.drop(blank(contents(pairs.column("prompt"))), "empty_prompt")
    drops.drop(blank(chosen) | blank(rejected), "empty_response")
    drops.drop(pc.equal(chosen, rejected).to_numpy(zero_copy_only=False), "identical_responses")

    keep = pa.array(drops.alive)
    rows = np.flatnonzero(drops.alive)
    result = pairs_table(
        source,
        pairs.column("prompt").filter(keep).combine_chunks(),
        pairs.column("chosen").filter(keep).combine_chunks(),
        pairs.column("rejected").filter(keep).combine_chunks(),
        rows,
        chosen_score=high[rows],
        rejected_score=low[rows],
        score=mean[rows],
        category=category.filter(keep),
        generator=generator,
    )
    return drops.result(result, len(rows))
