"""Source adapters: each on rows in its dataset's exact layout (skyfilter's samples, with planted bad rows) against a
plain-Python reading of the documented rule, and on real rows where ../shared/data has them."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from skyfilter.adapters import ADAPTERS, CURATION_SCHEMA, AdapterError
from skyfilter.io import read_table
from skyfilter.samples import sample_table
from skyfilter.schema import parse_helpsteer_prompt

SOURCES = {
    "helpsteer2": "HelpSteer2",
    "offsetbias": "OffsetBias",
    "wildguardmix": "WildGuardMix",
    "magpie-dpo": "Magpie-Pro",
    "magpie-ultra": "Magpie-Ultra",
    "pairs": "Mine",
}


def convert(adapter: str, table: pa.Table, generator: str | None = None):
    result = ADAPTERS[adapter].convert(table, SOURCES[adapter], generator)
    assert result.pairs.schema == CURATION_SCHEMA
    assert result.rows_in == table.num_rows == result.rows_used + result.dropped.num_rows
    return result


def answer(conversation: list[dict]) -> str:
    assert len(conversation) == 1 and conversation[0]["role"] == "assistant"
    return conversation[0]["content"]


def dropped(result) -> dict[int, str]:
    return dict(zip(result.dropped.column("source_row").to_pylist(), result.dropped.column("reason").to_pylist(),
                    strict=True))  # fmt: skip


def test_every_adapter_names_missing_columns():
    for adapter in ADAPTERS:
        with pytest.raises(AdapterError, match="needs column"):
            ADAPTERS[adapter].convert(pa.table({"text": ["a"]}), "x")


def test_helpsteer2_prefers_the_more_helpful_response():
    table = sample_table("helpsteer2", "HelpSteer2", 401)
    rows = table.to_pylist()
    # Reference: group usable rows by prompt; best and worst helpfulness make the pair; equal ones do not.
    reasons, groups = {}, {}
    for i, r in enumerate(rows):
        if r["helpfulness"] is None:
            reasons[i] = "missing_rating"
        elif not r["response"].strip():
            reasons[i] = "empty_response"
        else:
            groups.setdefault(r["prompt"], []).append(i)
    expected = []
    for members in groups.values():
        if len(members) == 1:
            reasons[members[0]] = "one_response"
            continue
        ratings = [rows[i]["helpfulness"] for i in members]
        if max(ratings) == min(ratings):
            reasons.update({i: "tied_rating" for i in members})
            continue
        best = members[ratings.index(max(ratings))]
        worst = members[ratings.index(min(ratings))]
        reasons.update({i: "extra_response" for i in members if i not in (best, worst)})
        expected.append((min(best, worst), best, worst))
    result = convert("helpsteer2", table)
    assert dropped(result) == reasons
    assert {"missing_rating", "empty_response", "one_response", "tied_rating"} <= set(reasons.values())
    got = result.pairs.to_pylist()
    assert [p["source_row"] for p in got] == [e[0] for e in sorted(expected)]
    for pair, (_, best, worst) in zip(got, sorted(expected), strict=True):
        assert answer(pair["chosen"]) == rows[best]["response"] and answer(pair["rejected"]) == rows[worst]["response"]
        assert pair["prompt"] == parse_helpsteer_prompt(rows[best]["prompt"])
        assert pair["chosen_score"] > pair["rejected_score"]
    assert any(len(p["prompt"]) == 3 for p in got)  # multi-turn prompts became user / assistant / user


def test_helpsteer2_parses_real_multi_turn_prompts(shared_data):
    """Real HelpSteer2-style rows (LAGER's pairs, prompts with <extra_id_1> markers) as two rated responses each."""
    real = read_table(shared_data / "prefs/helpsteer_pref_lager/helpsteer_pref.jsonl").slice(0, 300).to_pylist()
    multi = [r for r in real if "<extra_id_1>" in r["prompt"]]
    assert len(multi) >= 20
    table = pa.Table.from_pylist(
        [{"prompt": r["prompt"], "response": r[k], "helpfulness": h} for r in multi for k, h in
         (("chosen", 4), ("rejected", 1))],
        schema=pa.schema([("prompt", pa.string()), ("response", pa.string()), ("helpfulness", pa.int32())]),
    )  # fmt: skip
    result = convert("helpsteer2", table)
    assert result.pairs.num_rows == len({r["prompt"] for r in multi}) and result.dropped.num_rows == 0
    for pair in result.pairs.to_pylist():
        original = next(r for r in multi if r["prompt"].startswith(pair["prompt"][0]["content"]))
        roles = [m["role"] for m in pair["prompt"]]
        assert roles[0] == "user" and roles[-1] == "user" and len(roles) % 2 == 1
        assert all(a != b for a, b in zip(roles, roles[1:], strict=False))
        assert all("<extra_id_1>" not in m["content"] for m in pair["prompt"])
        assert answer(pair["chosen"]) == original["chosen"]


def test_offsetbias_takes_the_labelled_output():
    table = sample_table("offsetbias", "OffsetBias", 120)
    rows = table.to_pylist()
    result = convert("offsetbias", table)
    assert dropped(result) == {0: "bad_label", 2: "empty_response"}
    for pair in result.pairs.to_pylist():
        row = rows[pair["source_row"]]
        better, worse = ("output_1", "output_2") if row["label"] == 1 else ("output_2", "output_1")
        assert answer(pair["chosen"]) == row[better] and answer(pair["rejected"]) == row[worse]
        assert pair["prompt"] == [{"role": "user", "content": row["instruction"]}]


def test_offsetbias_accepts_string_labels_on_real_rows(shared_data):
    """EvalBiasBench (the OffsetBias authors' bench) writes the label as "1" / "2"."""
    bench = json.loads((shared_data / "prefs/offsetbias_evalbiasbench/biasbench.json").read_text())
    rows = [r for part in bench.values() for r in part]
    table = pa.table({
        "instruction": [r["instruction"] for r in rows], "output_1": [r["response1"] for r in rows],
        "output_2": [r["response2"] for r in rows], "label": [str(r["label"]) for r in rows],
    })  # fmt: skip
    result = convert("offsetbias", table)
    assert result.pairs.num_rows == len(rows) == 80
    for pair in result.pairs.to_pylist():
        row = rows[pair["source_row"]]
        assert answer(pair["chosen"]) == row["response1" if str(row["label"]) == "1" else "response2"]


def test_wildguardmix_prefers_refusals_for_harmful_prompts():
    table = sample_table("wildguardmix", "WildGuardMix", 300)
    rows = table.to_pylist()
    reasons, groups = {}, {}
    for i, r in enumerate(rows):
        if r["response"] is None:
            reasons[i] = "no_response"
        elif r["prompt_harm_label"] not in ("harmful", "unharmful") or r["response_refusal_label"] not in (
            "refusal", "compliance"):  # fmt: skip
            reasons[i] = "missing_label"
        else:
            groups.setdefault(r["prompt"], []).append(i)
    expected = {}
    for members in groups.values():
        refusals = [i for i in members if rows[i]["response_refusal_label"] == "refusal"]
        compliances = [i for i in members if rows[i]["response_refusal_label"] == "compliance"]
        if not refusals or not compliances:
            reasons.update({i: "no_counterpart" for i in members})
            continue
        harmful = rows[members[0]]["prompt_harm_label"] == "harmful"
        expected[min(members)] = (refusals[0], compliances[0]) if harmful else (compliances[0], refusals[0])
    result = convert("wildguardmix", table)
    assert dropped(result) == reasons
    assert {"no_response", "missing_label", "no_counterpart"} <= set(reasons.values())
    pairs = result.pairs.to_pylist()
    assert sorted(expected) == [p["source_row"] for p in pairs]
    for pair in pairs:
        good, bad = expected[pair["source_row"]]
        assert answer(pair["chosen"]) == rows[good]["response"] and answer(pair["rejected"]) == rows[bad]["response"]
        assert pair["adversarial"] == rows[pair["source_row"]]["adversarial"]
    assert any(p["adversarial"] for p in pairs) and not all(p["adversarial"] for p in pairs)


def _mean(scores: list) -> float | None:
    values = [s["score"] for s in scores or []]
    return None if not values or None in values else sum(values) / len(values)


def test_magpie_dpo_keeps_the_published_pair_and_mean_score():
    table = sample_table("magpie-dpo", "Magpie-Pro", 300, generator="Magpie-Pro")
    rows = table.to_pylist()
    result = convert("magpie-dpo", table, "Magpie-Pro")
    assert dropped(result) == {299: "unknown_category", 298: "empty_response", 297: "missing_score"}
    for pair in result.pairs.to_pylist():
        row = rows[pair["source_row"]]
        assert pair["prompt"] + pair["chosen"] == row["chosen"]
        assert pair["prompt"] + pair["rejected"] == row["rejected"]
        assert pair["score"] == pytest.approx(_mean(row["rewards_armorm"]), abs=1e-12)
        assert pair["chosen_score"] == max(s["score"] for s in row["rewards_armorm"])
        assert (pair["category"], pair["generator"]) == (row["task_category"], "Magpie-Pro")


def test_magpie_real_rows_are_paired_as_magpie_does(shared_data):
    """Magpie's own five example rows (responses and ArmoRM scores, before chosen / rejected were built): the
    first best and first worst response, as data_po/process_po.ipynb picks them."""
    table = read_table(shared_data / "prefs/magpie_po_example/example_instructions_5res_armorm.json")
    rows = table.to_pylist()
    result = convert("magpie-dpo", table, "Magpie-Air")
    assert result.pairs.num_rows == 5
    for pair, row in zip(result.pairs.to_pylist(), rows, strict=True):
        scores = [s["score"] for s in row["rewards_armorm"]]
        assert answer(pair["chosen"]) == row["responses"][scores.index(max(scores))]
        assert answer(pair["rejected"]) == row["responses"][scores.index(min(scores))]
        assert pair["prompt"] == [{"role": "user", "content": row["instruction"]}]
        assert pair["score"] == pytest.approx(np.mean(scores)) and pair["category"] == "Coding & Debugging"


def test_magpie_ultra_orders_by_score():
    table = sample_table("magpie-ultra", "Magpie-Ultra", 200)
    rows = table.to_pylist()
    result = convert("magpie-ultra", table, "Magpie-Ultra")
    assert dropped(result) == {199: "unknown_category", 198: "tied_score"}
    for pair in result.pairs.to_pylist():
        row = rows[pair["source_row"]]
        better, worse = ("response", "response_base")
        if row["score"] < row["score_base"]:
            better, worse = worse, better
        assert answer(pair["chosen"]) == row[better] and answer(pair["rejected"]) == row[worse]
        assert pair["score"] == pytest.approx((row["score"] + row["score_base"]) / 2)
        assert pair["category"] == row["primary_tag"]


def test_magpie_rows_that_cannot_be_paired_are_dropped(shared_data):
    """Responses missing, or fewer than the scores: never paired with another row's answers."""
    rows = read_table(shared_data / "prefs/magpie_po_example/example_instructions_5res_armorm.json").to_pylist()
    rows[1]["responses"] = rows[1]["responses"][:3]
    rows[4]["responses"] = None
    result = convert("magpie-dpo", pa.Table.from_pylist(rows), "Magpie-Air")
    assert dropped(result) == {1: "missing_responses", 4: "missing_responses"}
    for pair in result.pairs.to_pylist():
        assert answer(pair["chosen"]) in rows[pair["source_row"]]["responses"]


def test_rarer_drop_reasons():
    # a HelpSteer2 prompt with three responses: best and worst make the pair, the middle one is counted
    table = pa.table({"prompt": ["p", "p", "p", " "], "response": ["good", "fair", "bad", "x"],
                      "helpfulness": pa.array([4, 2, 0, 3], pa.int32())})  # fmt: skip
    result = convert("helpsteer2", table)
    assert dropped(result) == {1: "extra_response", 3: "empty_prompt"}
    assert [answer(p["chosen"]) for p in result.pairs.to_pylist()] == ["good"]
    # a Magpie pair whose two answers say the same
    magpie = sample_table("magpie-dpo", "Magpie-Pro", 20, bad=False)
    rows = magpie.to_pylist()
    rows[5]["rejected"] = rows[5]["chosen"]
    assert dropped(convert("magpie-dpo", pa.Table.from_pylist(rows, schema=magpie.schema))) == {
        5: "identical_responses"
    }


def test_wildguardmix_rows_that_disagree_on_their_prompt_are_dropped():
    table = pa.table({
        "prompt": ["p", "p", "q", "q"], "adversarial": [False, False, True, False],
        "response": ["No.", "Sure.", "No.", "Sure."],
        "prompt_harm_label": ["harmful", "unharmful", "harmful", "harmful"],
        "response_refusal_label": ["refusal", "compliance", "refusal", "compliance"],
    })  # fmt: skip
    result = convert("wildguardmix", table)
    assert dropped(result) == dict.fromkeys(range(4), "conflicting_labels") and result.pairs.num_rows == 0


@pytest.mark.parametrize("path", ["prefs/ultrafeedback_binarized_1200/train_clean.jsonl",
                                  "prefs/hh_rlhf_harmless_base_test/test.jsonl.gz"])  # fmt: skip
def test_pairs_of_any_layout_drop_what_has_no_preference(shared_data, path):
    """The `pairs` adapter (a user's own data in a recipe) on real files: the pairs to_pairs reads, less those
    without a prompt, with a blank or missing answer, or with the same answer twice (a plain-Python reading)."""
    from skyfilter import to_pairs

    table = read_table(shared_data / path)
    result = convert("pairs", table)
    expected, reasons = [], {}
    for i, pair in enumerate(to_pairs(table).to_pylist()):
        answered = all(side and side[-1]["role"] == "assistant" and side[-1]["content"].strip()
                       for side in (pair["chosen"], pair["rejected"]))  # fmt: skip
        if not pair["prompt"]:
            reasons[i] = "empty_prompt"
        elif not answered:
            reasons[i] = "empty_response"
        elif pair["chosen"] == pair["rejected"]:
            reasons[i] = "identical_responses"
        else:
            expected.append(i)
    assert dropped(result) == reasons and reasons  # both real files have such rows
    assert result.pairs.column("source_row").to_pylist() == expected
    kept = to_pairs(table).take(pa.array(expected))
    for column in ("prompt", "chosen", "rejected", "chosen_score"):
        assert result.pairs.column(column).to_pylist() == kept.column(column).to_pylist()
