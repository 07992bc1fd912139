"""Magpie-Ultra (``argilla/magpie-ultra-v0.1``, split ``train``, 50,000 rows): Llama-3.1-405B-Instruct answers
against the 405B base model's, both scored by ArmoRM.

Layout read (the dataset card's ``dataset_info``)::

    instruction     string
    response        string    the instruct model's answer
    response_base   string    the base model's answer
    score           float64   ArmoRM score of ``response``
    score_base      float64   ArmoRM score of ``response_base``
    primary_tag     string    the task category, in Magpie's spelling (MAGPIE_CATEGORIES)

(embeddings, guard outputs, quality and difficulty labels are not read.) As the card says, chosen is the answer
with the higher score (``score_difference > 0``: ``response``), rejected the other. The pair's ``score`` is the mean
of the two ArmoRM scores; ``generator`` is the recipe's label for the set.

Dropped rows: ``missing_score``, ``tied_score`` (equal scores: no preference), ``unknown_category``,
``empty_prompt``, ``empty_response``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from skyfilter.adapters._base import Converted, Drops, blank, column, pairs_table, preferred, require, strings, turn
from skyfilter.adapters.magpie_dpo import known_categories

COLUMNS = ("instruction", "response", "response_base", "score", "score_base", "primary_tag")


def convert(table: pa.Table, source: str, generator: str | None = None) -> Converted:
    require(table, "magpie-ultra", COLUMNS)
    instruction, response = strings(table, "instruction"), strings(table, "response")
    base = strings(table, "response_base")
    score, score_base = (column(table, c).cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
                         for c in ("score", "score_base"))  # fmt: skip
    category = strings(table, "primary_tag")
    drops = Drops(table)
    drops.drop(np.isnan(score) | np.isnan(score_base), "missing_score")
    drops.drop(score == score_base, "tied_score")
    drops.drop(~known_categories(category), "unknown_category")
    drops.drop(blank(instruction), "empty_prompt")
    drops.drop(blank(response) | blank(base), "empty_response")

    keep = pa.array(drops.alive)
    rows = np.flatnonzero(drops.alive)
    chosen, rejected = preferred(drops.alive, score[rows] > score_base[rows], response, base)
    pairs = pairs_table(
        source,
        turn(instruction.filter(keep), "user"),
        chosen,
        rejected,
        rows,
        chosen_score=np.maximum(score, score_base)[rows],
        rejected_score=np.minimum(score, score_base)[rows],
        score=((score + score_base) / 2)[rows],
        category=category.filter(keep),
        generator=generator,
    )
    return drops.result(pairs, len(rows))
