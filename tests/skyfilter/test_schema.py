"""Adapters: every known layout into the canonical pair table, on real files where they exist here."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from skyfilter import PAIR_SCHEMA, SchemaError, detect_layout, match_texts, read_table, to_pairs
from skyfilter.schema import MESSAGES, parse_helpsteer_prompt, parse_transcript

UF = "prefs/ultrafeedback_binarized_1200/train_clean.jsonl"


def msgs(*pairs):
    return [{"role": r, "content": c} for r, c in pairs]


def test_plain_strings():
    pairs = to_pairs(pa.table({"prompt": ["p", None], "chosen": ["c", "c2"], "rejected": ["r", None]}), source="s")
    assert pairs.schema == PAIR_SCHEMA
    rows = pairs.to_pylist()
    assert rows[0]["prompt"] == msgs(("user", "p")) and rows[0]["chosen"] == msgs(("assistant", "c"))
    assert rows[1]["prompt"] == [] and rows[1]["rejected"] == [] and rows[1]["source"] == "s"


def test_messages_layout_splits_the_last_turn():
    table = pa.table(
        {
            "chosen": [msgs(("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "good"))],
            "rejected": [msgs(("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "bad"))],
            "source": ["magpie_ultra"],
        }
    )
    row = to_pairs(table).to_pylist()[0]
    assert detect_layout(table.schema).name == "messages"
    assert row["prompt"] == msgs(("user", "q1"), ("assistant", "a1"), ("user", "q2"))
    assert row["chosen"] == msgs(("assistant", "good")) and row["rejected"] == msgs(("assistant", "bad"))
    assert row["source"] == "magpie_ultra"


def test_conversational_layout_and_text_fields():
    table = pa.table(
        {
            "prompt": [msgs(("system", "sys"), ("user", "first"), ("assistant", "a"), ("user", "second")), []],
            "chosen": [msgs(("assistant", "yes")), msgs(("assistant", "only"))],
            "rejected": [msgs(("assistant", "no")), []],
        }
    )
    pairs = to_pairs(table)
    texts, bounds = match_texts(pairs, "prompt")
    assert texts.to_pylist() == ["first", None] and bounds is None
    texts, bounds = match_texts(pairs, "conversation")
    assert texts.to_pylist() == ["sys", "first", "a", "second"] and bounds.to_pylist() == [0, 4, 4]
    texts, bounds = match_texts(pairs, "all")
    assert texts.to_pylist() == ["sys", "first", "a", "second", "yes", "no", "only"]
    assert bounds.to_pylist() == [0, 6, 7]


def test_first_user_turn_equals_a_plain_reading():
    """match_texts(..., "prompt") against the rule read row by row, on random rows: roles in any order, null roles,
    null and empty prompts, one-message rows (the path that returns the texts uncopied) and mixed ones."""
    rng = np.random.default_rng(7)
    roles = ["user", "assistant", "system", None]
    for case in range(300):
        one_message = case % 3 == 0
        prompts = []
        for r in range(int(rng.integers(1, 12))):
            if not one_message and rng.random() < 0.1:
                prompts.append(None)
                continue
            size = 1 if one_message else int(rng.integers(0, 5))
            weights = [1.0, 0, 0, 0] if one_message and case % 2 == 0 else [0.4, 0.3, 0.2, 0.1]
            prompts.append([{"role": rng.choice(roles, p=weights), "content": f"{r}.{k}"} for k in range(size)])
        pairs = pa.table({"prompt": pa.array(prompts, type=MESSAGES)})
        expected = [next((m["content"] for m in p or [] if m["role"] == "user"), None) for p in prompts]
        cut = len(prompts) // 2
        for table, rows in [
            (pairs, expected),
            (pairs.slice(1), expected[1:]),  # an offset into the lists
            (pa.concat_tables([pairs.slice(0, cut), pairs.slice(cut)]), expected),  # two chunks
        ]:
            texts, bounds = match_texts(table, "prompt")
            assert texts.to_pylist() == rows and bounds is None, prompts
    # A null row that still holds a message underneath (Arrow allows it): null, not the next row's turn.
    held = pa.array([{"role": "user", "content": "hidden"}, {"role": "user", "content": "c"}], type=MESSAGES.value_type)
    lists = pa.ListArray.from_arrays(pa.array([0, 1, 2], pa.int32()), held, MESSAGES, mask=pa.array([True, False]))
    assert match_texts(pa.table({"prompt": lists}), "prompt")[0].to_pylist() == [None, "c"]


def test_transcripts_and_helpsteer_markers():
    assert parse_transcript("\n\nHuman: hi\n\nAssistant: hello\n\nHuman: why?\n\nAssistant: because") == msgs(
        ("user", "hi"), ("assistant", "hello"), ("user", "why?"), ("assistant", "because")
    )
    assert parse_helpsteer_prompt("first\n<extra_id_1>Assistant\nanswer\n<extra_id_1>User\nsecond") == msgs(
        ("user", "first"), ("assistant", "answer"), ("user", "second")
    )


def test_unknown_layout_and_bad_types_are_clear():
    with pytest.raises(SchemaError, match="cannot tell the layout"):
        to_pairs(pa.table({"question": ["x"]}))
    with pytest.raises(SchemaError, match="'prompt' must hold strings"):
        to_pairs(pa.table({"prompt": [1], "chosen": ["a"], "rejected": ["b"]}))
    with pytest.raises(SchemaError, match="no column 'instruction'"):
        to_pairs(pa.table({"prompt": ["x"]}), prompt_column="instruction")


@pytest.mark.parametrize(
    ("path", "layout", "first_prompt_start"),
    [
        ("prefs/rmb_pairwise/rmb_pairwise.jsonl.gz", "rmb", "How do I hack into a secure database"),
        ("prefs/hh_rlhf_harmless_base_test/test.jsonl.gz", "hh", "what are some pranks with a pen"),
        ("prefs/helpsteer_pref_lager/helpsteer_pref.jsonl", "plain", "explain master slave replication"),
        ("prefs/llamafactory_dpo_demo/dpo_en_demo.json", "sharegpt", "Hi! I'd like to create a new language game"),
        ("prefs/ultrafeedback_binarized_1200/train_clean.jsonl", "plain", "how to cook t-bone in the oven"),
        (
            "bench/rewardbench_partial/llmbar_reconstructed_rb1_layout.jsonl",
            "plain",
            "Summarize the following content.",
        ),
    ],
)
def test_real_files(shared_data, path, layout, first_prompt_start):
    table = read_table(shared_data / path)
    assert detect_layout(table.schema).name == layout
    pairs = to_pairs(table, source=path)
    assert pairs.num_rows == table.num_rows and pairs.schema == PAIR_SCHEMA
    texts, _ = match_texts(pairs, "prompt")
    assert texts[0].as_py().startswith(first_prompt_start)
    assert texts.null_count < table.num_rows * 0.01  # nearly every pair has a first user turn
    chosen = pairs.column("chosen").to_pylist()
    assert all(c and c[-1]["role"] == "assistant" for c in chosen[:200])


def test_real_multi_turn_files(shared_data):
    hh = to_pairs(read_table(shared_data / "prefs/hh_rlhf_harmless_base_test/test.jsonl.gz")).to_pylist()[0]
    roles = [m["role"] for m in hh["prompt"]]
    assert len(roles) >= 3 and roles == ["user", "assistant"] * (len(roles) // 2) + ["user"]
    helpsteer = to_pairs(read_table(shared_data / "prefs/helpsteer_pref_lager/helpsteer_pref.jsonl"))
    turns = [len(p) for p in helpsteer.column("prompt").to_pylist()]
    assert max(turns) >= 3 and all(t % 2 == 1 for t in turns)  # user, (assistant, user)*
    scores = to_pairs(read_table(shared_data / "prefs/ultrafeedback_binarized_1200/train_clean.jsonl"))
    assert scores.column("chosen_score").null_count == 0


def test_answers_in_other_columns_are_not_read_as_prompts_alone(shared_data):
    """Auto-J's pairs (`response 1`, `response 2`) became pairs without answers without a word. The advice names
    its `label` column, which says which answer is better: renaming the columns alone would swap 499 pairs."""
    table = read_table(shared_data / "prefs/autoj_pairwise_test/testdata_pairwise.jsonl.gz")
    with pytest.raises(SchemaError, match=r"columns \['response 1', 'response 2'\] look like answers") as refused:
        to_pairs(table)
    assert "better answer in a chosen column" in str(refused.value) and "['label'] may say which" in str(refused.value)
    assert to_pairs(table, layout="prompts").num_rows == table.num_rows  # said in so many words
    assert to_pairs(pa.table({"prompt": ["a"], "id": [1]})).to_pylist()[0]["prompt"] == msgs(("user", "a"))


def test_a_prompt_string_beside_whole_conversations(tmp_path, shared_data):
    """HuggingFaceH4/ultrafeedback_binarized's layout: a prompt string beside chosen and rejected that hold the
    whole conversation. It was refused (`'chosen' must hold strings`); it reads as TRL reads it: the prompt is the
    conversations' own turns, not put before them twice. A row whose sides hold answers alone keeps the prompt."""
    import json

    rows = [json.loads(line) for line in (shared_data / UF).read_text(encoding="utf-8").splitlines()[:3]]
    h4 = [{"prompt": r["prompt"], "chosen": msgs(("user", r["prompt"]), ("assistant", r["chosen"])),
           "rejected": msgs(("user", r["prompt"]), ("assistant", r["rejected"]))} for r in rows]  # fmt: skip
    h4[1] = {**h4[1], "chosen": h4[1]["chosen"][1:], "rejected": h4[1]["rejected"][1:]}  # answers alone
    path = tmp_path / "h4.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in h4), encoding="utf-8")
    table = read_table(path)
    assert detect_layout(table.schema).name == "conversational"
    pairs = to_pairs(table).to_pylist()
    for pair, row in zip(pairs, rows, strict=True):
        assert pair["prompt"] == msgs(("user", row["prompt"]))
        assert pair["chosen"] == msgs(("assistant", row["chosen"]))
        assert pair["rejected"] == msgs(("assistant", row["rejected"]))
    assert (
        to_pairs(
            pa.Table.from_pylist(
                [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows]
            )
        ).to_pylist()
        == pairs
    )  # the plain reading of the same rows


def test_transcripts_that_part_before_the_last_turn_keep_each_answer_in_its_context(shared_data):
    """Five real HH-RLHF test rows have a turn more on one side (an inline "Human:" the transcript format does not
    split): the prompt is the turns both sides share, each answer the turns after them (TRL's extract_prompt). The
    rejected answer was set against the chosen side's longer context."""
    table = read_table(shared_data / "prefs/hh_rlhf_harmless_base_test/test.jsonl.gz")
    pairs = to_pairs(table).to_pylist()
    parted = [i for i, p in enumerate(pairs) if len(p["chosen"]) > 1 or len(p["rejected"]) > 1]
    assert parted == [1254, 1688, 1950, 1952, 2036]
    for i in parted:
        chosen = parse_transcript(table.column("chosen")[i].as_py())
        rejected = parse_transcript(table.column("rejected")[i].as_py())
        pair = pairs[i]
        assert pair["prompt"] + pair["chosen"] == chosen and pair["prompt"] + pair["rejected"] == rejected
        assert chosen[len(pair["prompt"])] != rejected[len(pair["prompt"])]  # the first turn they differ in
    same = [p for i, p in enumerate(pairs) if i not in parted]
    assert all(len(p["chosen"]) == len(p["rejected"]) == 1 for p in same)
