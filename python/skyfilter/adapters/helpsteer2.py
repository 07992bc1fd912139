"""HelpSteer2 (``nvidia/HelpSteer2``, default config, split ``train``): responses rated by people, two per prompt.

Layout read (the dataset card's ``dataset_info``: 20,324 train and 1,038 validation rows)::

    prompt        string   earlier turns marked "\\n<extra_id_1>Assistant\\n" / "\\n<extra_id_1>User\\n"
    response      string   the last assistant turn
    helpfulness   int32    0-4 (also correctness, coherence, complexity, verbosity; not read)

The card says consecutive rows share a prompt; rows are grouped by the exact prompt text instead, which gives the
same pairs and does not depend on the order. Per prompt, chosen = the response with the higher helpfulness,
rejected = the lower (the HelpSteer2 paper's and Skywork-Reward's rule); equal helpfulness is no preference.

Dropped rows: ``missing_rating`` (null helpfulness), ``empty_prompt``, ``empty_response``, ``one_response`` (the
prompt has no second usable response), ``tied_rating`` (best and worst are equally helpful), ``extra_response``
(a prompt with more than two: the best and the worst make the pair, first in row order on ties).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from skyfilter.adapters._base import (
    Converted,
    Drops,
    blank,
    column,
    in_row_order,
    messages,
    pairs_table,
    require,
    strings,
    turn,
)
from skyfilter.schema import parse_helpsteer_prompt

COLUMNS = ("prompt", "response", "helpfulness")


def convert(table: pa.Table, source: str, generator: str | None = None) -> Converted:
    require(table, "helpsteer2", COLUMNS)
    prompt, response = strings(table, "prompt"), strings(table, "response")
    rating = column(table, "helpfulness").cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    drops = Drops(table)
    drops.drop(np.isnan(rating), "missing_rating")
    drops.drop(blank(prompt), "empty_prompt")
    drops.drop(blank(response), "empty_response")

    chosen_rows, rejected_rows = [], []
    unpaired: dict[str, list[int]] = {"one_response": [], "tied_rating": [], "extra_response": []}
    for rows in drops.groups(prompt):
        if len(rows) < 2:
            unpaired["one_response"] += rows
            continue
        best = max(rows, key=lambda r: (rating[r], -r))
        worst = min(rows, key=lambda r: (rating[r], r))
        if rating[best] == rating[worst]:
            unpaired["tied_rating"] += rows
            continue
        unpaired["extra_response"] += [r for r in rows if r not in (best, worst)]
        chosen_rows.append(best)
        rejected_rows.append(worst)
    drops.drop_rows(unpaired)

    chosen_rows, rejected_rows, first = in_row_order(chosen_rows, rejected_rows)
    pairs = pairs_table(
        source,
        messages([parse_helpsteer_prompt(p) for p in prompt.take(pa.array(chosen_rows)).to_pylist()]),
        turn(response.take(pa.array(chosen_rows)), "assistant"),
        turn(response.take(pa.array(rejected_rows)), "assistant"),
        first,
        chosen_score=rating[chosen_rows],
        rejected_score=rating[rejected_rows],
        generator=generator,
    )
    return drops.result(pairs, 2 * len(chosen_rows))
