"""Pairs into token ids: layouts, one BOS, and the truncation policy with every dropped pair counted."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("transformers")
from skyrm.data import conversations, encode_pairs, read_pairs  # noqa: E402
from skyrm.model import tiny_tokenizer  # noqa: E402

USER = {"role": "user", "content": "What is 2 + 2?"}


def test_layouts_give_the_same_conversations():
    whole = pa.table({"chosen": [[USER, {"role": "assistant", "content": "4"}]],
                      "rejected": [[USER, {"role": "assistant", "content": "5"}]]})  # fmt: skip
    split = pa.table({"prompt": [[USER]], "chosen": [[{"role": "assistant", "content": "4"}]],
                      "rejected": [[{"role": "assistant", "content": "5"}]]})  # fmt: skip
    plain = pa.table({"prompt": ["What is 2 + 2?"], "chosen": ["4"], "rejected": ["5"]})
    # HuggingFaceH4/ultrafeedback_binarized: a prompt string beside whole conversations (the prompt was put twice)
    h4 = whole.append_column("prompt", pa.array(["What is 2 + 2?"]))
    assert conversations(whole) == conversations(split) == conversations(plain) == conversations(h4)
    with pytest.raises(ValueError, match="`chosen` and `rejected`"):
        conversations(pa.table({"text": ["x"]}))


def test_one_bos_whether_or_not_the_template_writes_it():
    tokenizer = tiny_tokenizer()
    table = pa.table({"prompt": ["hi"], "chosen": ["a"], "rejected": ["b"]})
    with_bos = encode_pairs(table, tokenizer, 64)
    tokenizer.chat_template = tokenizer.chat_template.replace("{{ bos_token }}", "")
    without = encode_pairs(table, tokenizer, 64)
    for ids in (with_bos.chosen[0], without.chosen[0]):
        assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id
    assert list(with_bos.chosen) == list(without.chosen)


def test_truncation_policy_counts_every_dropped_pair():
    long_answer = "x" * 40
    table = pa.table({
        "prompt": ["short", "short", "p" * 60, "q", "same", "short", "same, long", "r"],
        "chosen": ["yes", long_answer + "A", "one", "", "it", "A" + 2 * long_answer, 2 * long_answer, "a"],
        "rejected": ["no", long_answer + "B", "two", "z", "it", "B" + 2 * long_answer, 2 * long_answer, " \n"],
    })  # fmt: skip
    tokenizer = tiny_tokenizer()
    dropped = encode_pairs(table, tokenizer, 48, "drop")
    # a blank answer (rows 3 and 7) is no preference; the same two sides are identical however long (row 6)
    assert dropped.rows == [0] and dropped.dropped == {"too_long": 3, "identical": 2, "empty_answer": 2}
    cut = encode_pairs(table, tokenizer, 48, "truncate")
    # the ends stay: rows 1 and 2 keep their different answers; row 5 differs only in what the cut takes away
    assert cut.rows == [0, 1, 2] and cut.dropped == {"identical_after_truncation": 1, "identical": 2, "empty_answer": 2}
    assert all(len(ids) <= 48 for ids in [*cut.chosen, *cut.rejected])
    end = tokenizer("</s>\n", add_special_tokens=False)["input_ids"]  # the template's end, where the reward is read
    assert all(ids[0] == tokenizer.bos_token_id and ids[-2:] == end for ids in [*cut.chosen, *cut.rejected])
    assert len(dropped) + sum(dropped.dropped.values()) == table.num_rows == cut.total


#: What Gemma's chat template does with a system turn (google/gemma-2-27b-it, the skywork-gemma-2-27b preset's model).
NO_SYSTEM_TURN = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"


def test_pairs_the_chat_template_refuses_are_dropped_and_counted():
    """A template that raises for a conversation stopped training with a Jinja traceback; such a pair is dropped as
    ``template_refused`` and counted, as a pair without an answer is."""
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = NO_SYSTEM_TURN + tokenizer.chat_template
    system = {"role": "system", "content": "Be brief."}
    table = pa.table({"prompt": [[system, USER], [USER], [system, USER]], "chosen": ["4", "4", "four"],
                      "rejected": ["5", "5", "five"]})  # fmt: skip
    encoded = encode_pairs(table, tokenizer, 64)
    assert encoded.rows == [1] and encoded.dropped == {"template_refused": 2}


def test_unconverted_layouts_name_the_conversion(tmp_path, shared_data):
    """LLaMA-Factory's sharegpt rows and RMB's were refused for their first row's answer (an object), with a hint to
    set such rows apart that left no pair; now the file is one line saying how to convert it, in any format."""
    from skyrm.data import PAIR_KINDS, read_rows

    for name, what in [("llamafactory_dpo_demo/dpo_en_demo.json", "sharegpt rows"),
                       ("rmb_pairwise/rmb_pairwise.jsonl.gz", "RMB rows")]:  # fmt: skip
        path = shared_data / "prefs" / name
        with pytest.raises(ValueError, match=f"{what} .*: skyrm reads prompt / chosen / rejected pairs; convert them "
                                             f"first with `skyfilter convert {path} --out pairs.parquet`"):  # fmt: skip
            read_rows(str(path), kinds=PAIR_KINDS)
    pq.write_table(pa.table({"conversations": [[{"from": "human", "value": "hi"}]], "chosen": [{"value": "a"}],
                             "rejected": [{"value": "b"}]}), tmp_path / "sharegpt.parquet")  # fmt: skip
    with pytest.raises(ValueError, match="sharegpt.parquet: sharegpt rows"):
        read_pairs(str(tmp_path / "sharegpt.parquet"))


def test_read_pairs_from_files(tmp_path, shared_data):
    source = shared_data / "prefs/ultrafeedback_binarized_1200/train_clean.jsonl"
    table = read_pairs(str(source))
    assert table.num_rows == 1000 and {"prompt", "chosen", "rejected"} <= set(table.schema.names)
    pq.write_table(table, tmp_path / "pairs.parquet")
    assert read_pairs(str(tmp_path / "pairs.parquet")).num_rows == 1000
    encoded = encode_pairs(table.slice(0, 50), tiny_tokenizer(), 4096, "truncate")
    assert len(encoded) + sum(encoded.dropped.values()) == 50 and len(encoded) > 40


def test_read_pairs_from_a_curated_folder(tmp_path):
    """skyfilter curate's output: data/train-*.parquet is the split; dropped.parquet beside it is not read."""
    (tmp_path / "data").mkdir()
    pairs = pa.table({"prompt": ["q"], "chosen": ["a"], "rejected": ["b"]})
    pq.write_table(pairs, tmp_path / "data" / "train-00000-of-00001.parquet")
    pq.write_table(
        pa.table({"prompt": ["x"] * 5, "chosen": ["y"] * 5, "rejected": ["z"] * 5}), tmp_path / "dropped.parquet"
    )
    assert read_pairs(str(tmp_path)).equals(pairs)
    with pytest.raises(ValueError, match="a folder without data/test"):
        read_pairs(str(tmp_path), split="test")


def test_token_lists_are_flat_and_behave_as_lists():
    from skyrm.data import TokenLists

    lists = [[5, 6, 7], [], [8], [9, 10]]
    flat = TokenLists.from_lists(lists)
    assert flat.values.dtype == "int32" and flat.offsets.tolist() == [0, 3, 3, 4, 6]
    assert (
        list(flat) == lists
        and flat[-1] == [9, 10]
        and flat[1:3] == [[], [8]]
        and flat.lengths().tolist() == [3, 0, 1, 2]
    )
    again = TokenLists.from_arrow(pa.chunked_array([flat.to_arrow().slice(1)]))  # an offset: rebased
    assert list(again) == lists[1:]
    with pytest.raises(IndexError):
        flat[4]


def test_helpsteer_turn_markers_are_read_as_skyfilter_reads_them(shared_data):
    """HelpSteer2's prompts mark earlier turns with `<extra_id_1>User` / `<extra_id_1>Assistant`: skyfilter read
    them as turns, training and scoring as literal text (30 of the 134 real multi-turn rows scored up to 0.18
    apart). Now every real row is the same conversation in both."""
    import json

    from skyfilter import to_pairs

    path = shared_data / "prefs/helpsteer_pref_lager/helpsteer_pref.jsonl"
    table = pa.Table.from_pylist([json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()])
    chosen, rejected = conversations(table)
    pairs = to_pairs(table).to_pylist()
    assert [c for c in chosen if len(c) > 2] and max(len(c) for c in chosen) > 10  # multi-turn rows are there
    assert chosen == [p["prompt"] + p["chosen"] for p in pairs]
    assert rejected == [p["prompt"] + p["rejected"] for p in pairs]
