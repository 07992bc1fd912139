"""WildGuardMix (``allenai/wildguardmix``, config ``wildguardtrain``, split ``train``, 86,759 rows; gated: log in
with a Hugging Face token first): prompts, some with a response, labelled for harm and refusal.

Layout read (the dataset card and ``load_dataset`` output)::

    prompt                   string
    adversarial              bool     an adversarial (jailbreak-style) prompt
    response                 string   null for the 48,783 prompt-only rows
    prompt_harm_label        string   "harmful" / "unharmful"
    response_refusal_label   string   "refusal" / "compliance" (null without a response)

The synthetic prompts come with a refusal and a compliance response. Rows are grouped by the exact prompt text;
for a harmful prompt the refusal is chosen and the compliance rejected, for an unharmful one the other way round
(Skywork-Reward's reading). The pair keeps the prompt's ``adversarial`` flag for the recipe's rule.

Dropped rows: ``no_response`` (prompt-only rows), ``missing_label`` (no harm or refusal label), ``empty_prompt``,
``conflicting_labels`` (the prompt's rows disagree on its harm label or adversarial flag), ``no_counterpart`` (the
prompt has refusals only or compliances only), ``extra_response`` (more than one refusal or
compliance for a prompt: the first of each in row order makes the pair).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from skyfilter.adapters._base import (
    Converted,
    Drops,
    blank,
    column,
    in_row_order,
    pairs_table,
    require,
    strings,
    turn,
)

COLUMNS = ("prompt", "adversarial", "response", "prompt_harm_label", "response_refusal_label")


def convert(table: pa.Table, source: str, generator: str | None = None) -> Converted:
    require(table, "wildguardmix", COLUMNS)
    prompt, response = strings(table, "prompt"), strings(table, "response")
    harm, refusal = strings(table, "prompt_harm_label"), strings(table, "response_refusal_label")
    adversarial = column(table, "adversarial").cast(pa.bool_())
    drops = Drops(table)
    drops.drop(blank(response), "no_response")
    harmful = pc.fill_null(pc.equal(harm, "harmful"), False).to_numpy(zero_copy_only=False)
    harmless = pc.fill_null(pc.equal(harm, "unharmful"), False).to_numpy(zero_copy_only=False)
    refused = pc.fill_null(pc.equal(refusal, "refusal"), False).to_numpy(zero_copy_only=False)
    complied = pc.fill_null(pc.equal(refusal, "compliance"), False).to_numpy(zero_copy_only=False)
    drops.drop(~(harmful | harmless) | ~(refused | complied), "missing_label")
    drops.drop(blank(prompt), "empty_prompt")

    chosen_rows, rejected_rows = [], []
    unpaired: dict[str, list[int]] = {"conflicting_labels": [], "no_counterpart": [], "extra_response": []}
    flags = adversarial.fill_null(False).to_numpy(zero_copy_only=False)
    for rows in drops.groups(prompt):
        if len({(bool(harmful[r]), bool(flags[r])) for r in rows}) > 1:
            unpaired["conflicting_labels"] += rows  # the prompt's rows disagree on its harm or adversarial label
            continue
        refusals, compliances = [r for r in rows if refused[r]], [r for r in rows if complied[r]]
        if not refusals or not compliances:
            unpaired["no_counterpart"] += rows
            continue
        good, bad = (refusals[0], compliances[0]) if harmful[rows[0]] else (compliances[0], refusals[0])
        unpaired["extra_response"] += [r for r in rows if r not in (good, bad)]
        chosen_rows.append(good)
        rejected_rows.append(bad)
    drops.drop_rows(unpaired)

    chosen_rows, rejected_rows, first = in_row_order(chosen_rows, rejected_rows)
    pairs = pairs_table(
        source,
        turn(prompt.take(pa.array(first)), "user"),
        turn(response.take(pa.array(chosen_rows)), "assistant"),
        turn(response.take(pa.array(rejected_rows)), "assistant"),
        first,
        adversarial=adversarial.take(pa.array(first)).fill_null(False),
        generator=generator,
    )
    return drops.result(pairs, 2 * len(chosen_rows))
