"""The shipped sample's planted preference (skyfilter.samples): every pair's worse answer is degraded in a way the
tiny model can learn, deterministically, with every text distinct; the benchmark sample is degraded the same ways."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from skyfilter.samples import _LOOPS, _REFUSALS, DEGRADATIONS, UNSAFE_WORDS, degrade, sample_table

TEXT = "Garden river compute the market. Bright ocean for the window and a letter. Quiet forest engine steady. (7)"


def _kind(text: str) -> str:
    """What a (possibly) degraded answer is: the inverse of degrade, for the sample's texts."""
    if text.startswith("Sure, here is how to"):
        return "unsafe"
    if any(text.startswith(r) for r in _REFUSALS):
        return "refusal"
    if any(text.count(loop) >= 2 for loop in _LOOPS):
        return "looping"
    if not text.endswith(")"):
        return "truncated"
    return "shuffled" if "." not in text and text[0].islower() else "coherent"


@pytest.mark.parametrize("kind", list(DEGRADATIONS))
def test_each_degradation_is_deterministic_and_recognisable(kind):
    a, b = degrade(TEXT, kind, np.random.default_rng(3)), degrade(TEXT, kind, np.random.default_rng(3))
    assert a == b != TEXT and _kind(a) == kind and _kind(TEXT) == "coherent"
    if kind == "shuffled":
        words = TEXT.removesuffix(" (7)").lower().replace(".", "").split()
        assert sorted(a.removesuffix(" (7)").split()) == sorted(words)
    if kind == "truncated":
        assert TEXT.startswith(a) and len(a) < 0.7 * len(TEXT)
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade(TEXT, "reversed", np.random.default_rng(0))


def test_the_worse_answer_of_every_pair_is_degraded():
    table = sample_table("offsetbias", "OffsetBias", 400, bad=False).to_pylist()
    kinds = collections.Counter()
    for row in table:
        better, worse = (row["output_1"], row["output_2"]) if row["label"] == 1 else (row["output_2"], row["output_1"])
        kinds[(_kind(better), _kind(worse))] += 1
    assert set(kinds) == {("coherent", k) for k in DEGRADATIONS} | {("refusal", "unsafe")}
    assert 0.15 < kinds[("refusal", "unsafe")] / len(table) < 0.35  # the harmful requests of SAFETY_SHARE
    magpie = sample_table("magpie-dpo", "Magpie-Pro", 300, generator="Magpie-Pro", bad=False).to_pylist()
    worse = collections.Counter(_kind(r["rejected"][-1]["content"]) for r in magpie)
    assert set(worse) == set(DEGRADATIONS) and all(_kind(r["chosen"][-1]["content"]) == "coherent" for r in magpie)


def test_wildguardmix_pairs_and_their_disguised_jailbreaks():
    rows = [r for r in sample_table("wildguardmix", "WildGuardMix", 2000, bad=False).to_pylist() if r["response"]]
    seen = collections.Counter()
    for r in rows:
        harmful, label = r["prompt_harm_label"] == "harmful", r["response_refusal_label"]
        kind = _kind(r["response"])
        if label == "refusal":
            assert kind == "refusal"
            assert (r["response"].count(".") == 1) == (not harmful)  # a needless refusal is curt
        elif harmful and kind == "unsafe":
            assert sum(r["response"].count(w) for w in UNSAFE_WORDS) >= 10
        else:
            kind = "disguised" if r["response"].startswith("Of course!") else "helpful"
            assert (kind == "disguised") <= (harmful and r["adversarial"])
        seen[(harmful, r["adversarial"], label, kind)] += 1
    assert seen[(True, True, "compliance", "disguised")] and seen[(True, True, "compliance", "unsafe")]
    assert not seen[(True, False, "compliance", "disguised")]


def test_every_text_is_distinct():
    table = sample_table("magpie-dpo", "Magpie-Air", 3000, generator="Magpie-Air", planted=60, bad=False)
    texts = [t for answers in table.column("responses").to_pylist() for t in answers]
    assert len(set(texts)) == len(texts)
    table = sample_table("offsetbias", "OffsetBias", 3000, bad=False)
    texts = table.column("output_1").to_pylist() + table.column("output_2").to_pylist()
    assert len(set(texts)) == len(texts)


def test_the_benchmark_sample_is_degraded_the_same_ways():
    from skyrm.eval.rewardbench import SECTIONS
    from skyrm.eval.sample import sample_benchmark

    rows = sample_benchmark().to_pylist()
    assert len(rows) == 8 * sum(len(s) for s in SECTIONS.values())
    safety = set(SECTIONS["Safety"]) - {"xstest-should-respond"}
    for r in rows:
        kind = _kind(r["rejected"] if r["rejected"].endswith(".") else r["rejected"] + " (0)")
        if r["subset"] in safety:
            assert _kind(r["chosen"]) == "refusal" and r["rejected"].startswith("Sure, here is how to")
        elif r["subset"] == "xstest-should-respond":
            assert kind == "refusal"
        else:
            assert r["chosen"] != r["rejected"] and kind in ("truncated", "shuffled", "looping", "refusal", "coherent")
