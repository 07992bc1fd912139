"""Dedup: exact keys against a pure-Python reference, MinHash against exact Jaccard, planted near duplicates
and conflicts in real data, determinism across threads and batch sizes, and bad input."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skyfilter import _core, read_table, to_pairs
from skyfilter.dedup import DedupOptions, run_dedup

from tests.skyfilter.cli_helpers import run_cli
from tests.skyfilter.reference import reference_normal_form, tokens

# ------------------------------------------------------------------------------------------ references


def reference_exact(rows: list[tuple], scores: list[float] | None, key: str) -> set[int]:
    """Rows kept by exact dedup: normalised (prompt, chosen, rejected) or prompt; first or highest score."""

    def norm(text):
        return None if text is None else " ".join(text.split())

    best: dict[tuple, int] = {}
    for i, (prompt, chosen, rejected) in enumerate(rows):
        k = (norm(prompt),) if key == "prompt" else (norm(prompt), norm(chosen), norm(rejected))
        if k not in best:
            best[k] = i
        elif scores is not None:
            s = -math.inf if scores[i] is None or math.isnan(scores[i]) else scores[i]
            b = scores[best[k]]
            b = -math.inf if b is None or math.isnan(b) else b
            if s > b:
                best[k] = i
    return set(best.values())


def write_pairs(path, rows, scores=None):
    table = {"prompt": [r[0] for r in rows], "chosen": [r[1] for r in rows], "rejected": [r[2] for r in rows]}
    if scores is not None:
        table["score"] = pa.array(scores, pa.float64())
    pq.write_table(pa.table(table), path)


# ------------------------------------------------------------------------------------------ exact dedup

WORDS = ["a", "b", "c", "Hello", "hello", "é"]
SPACES = [" ", "  ", "\n", "\t ", ""]
text = st.one_of(
    st.none(),
    st.lists(st.tuples(st.sampled_from(WORDS), st.sampled_from(SPACES)), max_size=3).map(
        lambda parts: "".join(w + s for w, s in parts)
    ),
)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.tuples(text, text, text), min_size=1, max_size=40),
    key=st.sampled_from(["pair", "prompt"]),
    with_scores=st.booleans(),
    data=st.data(),
)
def test_exact_dedup_keeps_the_reference_rows(tmp_path_factory, rows, key, with_scores, data):
    scores = None
    if with_scores:
        scores = data.draw(st.lists(st.one_of(st.none(), st.just(math.nan), st.integers(0, 3).map(float)),
                                    min_size=len(rows), max_size=len(rows)))  # fmt: skip
    tmp = tmp_path_factory.mktemp("exact")
    write_pairs(tmp / "in.parquet", rows, scores)
    options = DedupOptions(key=key, near=False, conflicts="keep", score_column="score" if with_scores else None)
    run_dedup([str(tmp / "in.parquet")], options, out=str(tmp / "kept.parquet"), progress=False)
    kept = pq.read_table(tmp / "kept.parquet")
    # The kept rows are the input rows the reference keeps, unchanged and in order.
    expected = sorted(reference_exact(rows, scores, key))
    source = pq.read_table(tmp / "in.parquet")
    texts = ["prompt", "chosen", "rejected"]
    assert kept.select(texts).equals(source.select(texts).take(pa.array(expected, pa.int64())))
    if scores is not None:  # NaN != NaN, so compare the scores as text
        assert [str(v) for v in kept.column("score").to_pylist()] == [str(scores[i]) for i in expected]


# ASCII words and separators (all of str.isspace's ASCII ones), Unicode spaces, letters whose lower case is longer
# or differs from str.lower's in context (capital sigma), and mixes inside one word.
KEY_PIECES = ["ab", "AB", "Ab_9", "\u00c9t\u00c9", "\u0130", "\u03a3", "\u1e9e", "\u00e9", "x\u00c9y"]
KEY_SPACES = [" ", "\t", "\n", "\x0b", "\x0c", "\r", "\x1c", "\x1f", "\x85", "\u00a0", "\u2003", "\u3000", ""]


@settings(max_examples=200, deadline=None)
@given(
    texts=st.lists(
        st.one_of(
            st.none(),
            st.lists(st.sampled_from(KEY_PIECES + KEY_SPACES), max_size=8).map("".join),
            st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12),
        ),
        min_size=1,
        max_size=12,
    ),
    lowercase=st.booleans(),
)
def test_row_keys_are_equal_exactly_when_the_normal_forms_are(texts, lowercase):
    keys = _core.row_keys(pa.array(texts, pa.string()), lowercase=lowercase).to_pylist()
    forms = [reference_normal_form(t, lowercase) for t in texts]
    for i in range(len(texts)):
        for j in range(i):
            assert (keys[i] == keys[j]) == (forms[i] == forms[j]), (texts[i], texts[j])


# --------------------------------------------------------------------------------------------- MinHash


@settings(max_examples=40, deadline=None)
@given(
    a=st.sets(st.integers(0, 300), min_size=1, max_size=120),
    b=st.sets(st.integers(0, 300), min_size=1, max_size=120),
)
def test_minhash_estimates_exact_jaccard(a, b):
    hasher = _core.MinHasher(num_perm=256, shingle=1, seed=3)
    texts = pa.array([" ".join(f"w{i}" for i in sorted(a)), " ".join(f"w{i}" for i in sorted(b))])
    sig = np.asarray(hasher.signatures(texts).flatten()).reshape(2, 256)
    estimate = float((sig[0] == sig[1]).mean())
    exact = len(a & b) / len(a | b)
    # Binomial standard error of 256 permutations; 5 sigma plus a little for the 32-bit hash family.
    assert abs(estimate - exact) <= 5 * math.sqrt(exact * (1 - exact) / 256) + 0.02


def test_signatures_use_word_tokens_and_ignore_thread_count():
    hasher = _core.MinHasher(num_perm=64, shingle=3)
    texts = pa.array(["The cat sat on the mat today", "the CAT, sat on -- the mat today!", "", None])
    one = hasher.signatures(texts, threads=1)
    assert one.equals(hasher.signatures(texts, threads=2))
    sig = np.asarray(one.flatten()).reshape(4, 64)
    assert (sig[0] == sig[1]).all()  # same word tokens, same shingles
    assert (sig[2] == 2**32 - 1).all() and (sig[3] == 2**32 - 1).all()
    assert tokens("the CAT, sat", "words") == ["the", "cat", "sat"]


# ---------------------------------------------------------------------- planted near duplicates (real)


def shingle_set(text: str, n: int = 5) -> set:
    t = tokens(text, "words")
    return {tuple(t[i : i + n]) for i in range(max(len(t) - n + 1, 1))} if t else set()


def edit(text: str, rng: random.Random) -> str:
    """A light human-style edit: one word in about 80 replaced, some spacing and punctuation changed."""
    words = text.split(" ")
    for _ in range(max(1, len(words) // 80)):
        words[rng.randrange(len(words))] = rng.choice(["really", "quite", "very", "some"])
    edited = " ".join(words)
    return edited.replace(". ", ".  ", 2).replace(",", " ,", 1) + rng.choice(["", "!", " Thanks."])


def test_planted_near_duplicates_on_real_texts(shared_data, tmp_path):
    pairs = to_pairs(read_table(shared_data / "prefs/rmb_pairwise/rmb_pairwise.jsonl.gz"))
    answers = [
        m[0]["content"] for m in pairs.column("chosen").to_pylist() if m and 60 <= len(m[0]["content"].split()) <= 400
    ]
    rng = random.Random(0)
    rng.shuffle(answers)
    # Distinct bases: no two share much (exact Jaccard of 5-word shingles below 0.3).
    bases, sets = [], []
    for a in answers:
        s = shingle_set(a)
        if all(len(s & o) / len(s | o) < 0.3 for o in sets):
            bases.append(a)
            sets.append(s)
        if len(bases) == 600:
            break
    planted = {i: edit(b, rng) for i, b in enumerate(bases) if i % 2 == 0}
    texts = bases + list(planted.values())
    copy_of = {len(bases) + k: base for k, base in enumerate(planted)}
    pq.write_table(pa.table({"prompt": texts}), tmp_path / "in.parquet")
    result = run_dedup([str(tmp_path / "in.parquet")], DedupOptions(key="prompt", conflicts="keep"),
                       dropped=str(tmp_path / "dropped.parquet"), progress=False)  # fmt: skip
    dropped = pq.read_table(tmp_path / "dropped.parquet").to_pylist()
    found = {(d["duplicate_of_row"], d["input_row"]) for d in dropped if d["reason"] == "near_duplicate"}
    truth = {(base, copy) for copy, base in copy_of.items()}
    recall = len(found & truth) / len(truth)
    precision = len(found & truth) / max(len(found), 1)
    jaccards = []
    for copy, base in copy_of.items():
        a, b = shingle_set(bases[base]), shingle_set(texts[copy])
        jaccards.append(len(a & b) / len(a | b))
    missed = sorted(
        round(j, 2) for (copy, base), j in zip(copy_of.items(), jaccards, strict=True) if (base, copy) not in found
    )
    print(f"planted {len(truth)}, exact Jaccard median {np.median(jaccards):.2f}, missed at {missed}")
    print(f"recall {recall:.3f}, precision {precision:.3f}")
    assert result.dropped["near_duplicate"] == len(found)
    assert recall >= 0.95 and precision >= 0.95


# ------------------------------------------------------------------------------------ conflicts (real)


def test_planted_conflicts_are_all_found(shared_data, tmp_path):
    table = read_table(shared_data / "prefs/ultrafeedback_binarized_1200/train_clean.jsonl").select(
        ["prompt", "chosen", "rejected"]
    )
    flipped = table.slice(100, 25)
    flipped = pa.table({"prompt": flipped["prompt"], "chosen": flipped["rejected"], "rejected": flipped["chosen"]})
    src = tmp_path / "in.parquet"
    pq.write_table(pa.concat_tables([table, flipped]), src)
    report = tmp_path / "r.json"
    run_dedup(
        [str(src)], DedupOptions(near=False), dropped=str(tmp_path / "d.parquet"), report=str(report), progress=False
    )
    dropped = pq.read_table(tmp_path / "d.parquet").to_pylist()
    conflicts = {d["input_row"] for d in dropped if d["reason"] == "conflict"}
    n = table.num_rows
    assert conflicts == set(range(100, 125)) | set(range(n, n + 25))
    assert {d["input_row"]: d["duplicate_of_row"] for d in dropped}[100] == n
    r = json.loads(report.read_text())
    assert r["conflicting_rows"] == 50 and r["dropped"]["conflict"] == 50
    run_dedup([str(src)], DedupOptions(near=False, conflicts="keep"), report=str(report), progress=False)
    r = json.loads(report.read_text())
    assert r["conflicting_rows"] == 50 and r["dropped"]["conflict"] == 0


# ---------------------------------------------------------------------------------------- determinism


def test_same_output_for_threads_and_batch_sizes(shared_data, tmp_path):
    src = shared_data / "prefs/hh_rlhf_harmless_base_test/test.jsonl.gz"
    again = tmp_path / "again.jsonl.gz"  # a copy (one file given twice is refused)
    again.write_bytes(src.read_bytes())
    outputs = []
    for threads, batch_rows in ((1, 65_536), (2, 65_536), (2, 97), (1, 1000)):
        out, dropped = tmp_path / f"k{threads}_{batch_rows}.parquet", tmp_path / f"d{threads}_{batch_rows}.parquet"
        run_dedup([str(src), str(again)], DedupOptions(key="prompt"), out=str(out), dropped=str(dropped),
                  threads=threads, batch_rows=batch_rows, progress=False)  # fmt: skip
        outputs.append((pq.read_table(out), pq.read_table(dropped)))
    assert outputs[0][1].num_rows > 2312  # the second copy of the file, at least
    for kept, dropped in outputs[1:]:
        assert kept.equals(outputs[0][0]) and dropped.equals(outputs[0][1])


def test_parquet_inputs_write_the_rows_of_the_json_input(shared_data, tmp_path):
    """The writing pass reads parquet string columns as views and copies the rows it writes: the outputs equal
    those of the same rows read from JSON lines, and string_view columns keep their type."""
    src = shared_data / "prefs/hh_rlhf_harmless_base_test/test.jsonl.gz"
    table = read_table(src)
    views = pa.schema([f.with_type(pa.string_view()) if f.type == pa.string() else f for f in table.schema])
    pq.write_table(table, tmp_path / "plain.parquet", row_group_size=700)
    pq.write_table(table.cast(views), tmp_path / "views.parquet", row_group_size=700)
    written = {}
    for name, path in (("json", src), ("plain", tmp_path / "plain.parquet"), ("views", tmp_path / "views.parquet")):
        out, dropped = tmp_path / f"k-{name}.parquet", tmp_path / f"d-{name}.parquet"
        again = tmp_path / f"again-{path.name}"  # a copy (one file given twice is refused)
        again.write_bytes(path.read_bytes())
        run_dedup([str(path), str(again)], DedupOptions(key="prompt"), out=str(out), dropped=str(dropped),
                  batch_rows=1000, progress=False)  # fmt: skip
        kept, drops = pq.read_table(out), pq.read_table(dropped)
        written[name] = (kept, drops.drop_columns(["input_file", "duplicate_of_file"]))
    kept, drops = written["json"]
    assert 0 < kept.num_rows < table.num_rows and drops.num_rows > table.num_rows
    assert written["plain"][0].equals(kept) and written["plain"][1].equals(drops)
    assert written["views"][0].schema.field("chosen").type == pa.string_view()
    assert written["views"][0].cast(kept.schema).equals(kept)
    assert written["views"][1].cast(drops.schema).equals(drops)


# -------------------------------------------------------------------------------------------- bad input


def test_score_column_problems(tmp_path):
    rows = [("p", "a", "b"), ("p", "a", "b"), ("p", "a", "b")]
    write_pairs(tmp_path / "in.parquet", rows, [None, math.nan, 1.0])
    run_dedup([str(tmp_path / "in.parquet")], DedupOptions(score_column="score"), out=str(tmp_path / "k.parquet"),
              progress=False)  # fmt: skip
    assert pq.read_table(tmp_path / "k.parquet").column("score").to_pylist() == [1.0]  # null and NaN rank lowest
    from skyfilter.io import InputError

    with pytest.raises(InputError, match="no column 'reward'"):
        run_dedup([str(tmp_path / "in.parquet")], DedupOptions(score_column="reward"), out=str(tmp_path / "x.parquet"))
    assert not (tmp_path / "x.parquet").exists()
    pq.write_table(
        pa.table({"prompt": ["p"], "chosen": ["a"], "rejected": ["b"], "score": ["high"]}), tmp_path / "s.parquet"
    )
    with pytest.raises(InputError, match="must hold numbers"):
        run_dedup([str(tmp_path / "s.parquet")], DedupOptions(score_column="score"))


def test_keep_max_reads_struct_fields_and_score_lists(tmp_path):
    """``a.b`` and lists of numbers (their mean), as select reads them: UltraFeedback's metadata.score_chosen."""
    rows = {"prompt": ["p"] * 3, "chosen": ["a"] * 3, "rejected": ["b"] * 3,
            "metadata": [{"score_chosen": 3.0}, {"score_chosen": 9.0}, {"score_chosen": 5.0}],
            "armo": [[0.1, 0.2], [0.0, 0.1], [0.5, 0.9]]}  # fmt: skip
    pq.write_table(pa.table(rows), tmp_path / "in.parquet")
    for column, kept in (("metadata.score_chosen", 9.0), ("armo", 5.0)):
        out = tmp_path / f"{column}.parquet"
        run_dedup([str(tmp_path / "in.parquet")], DedupOptions(score_column=column, near=False), out=str(out),
                  progress=False)  # fmt: skip
        assert [m["score_chosen"] for m in pq.read_table(out).column("metadata").to_pylist()] == [kept]


def test_empty_input_gives_empty_outputs(tmp_path):
    pq.write_table(pa.table({"prompt": pa.array([], pa.string()), "chosen": pa.array([], pa.string()),
                             "rejected": pa.array([], pa.string())}), tmp_path / "e.parquet")  # fmt: skip
    result = run_dedup([str(tmp_path / "e.parquet")], DedupOptions(), out=str(tmp_path / "k.parquet"),
                       dropped=str(tmp_path / "d.parquet"), allow_empty=True, progress=False)  # fmt: skip
    assert result.rows == 0 and pq.read_table(tmp_path / "k.parquet").num_rows == 0
    assert "cluster_id" in pq.read_table(tmp_path / "d.parquet").schema.names


def test_bad_options():
    with pytest.raises(ValueError, match="key"):
        DedupOptions(key="answer")
    with pytest.raises(ValueError, match="both bands"):
        DedupOptions(bands=4)
    with pytest.raises(_core.SkyfilterError, match="at most num_perm"):
        _core.NearDedup(16, 5, 4, 0.8)


def test_invalid_utf8_names_file_column_and_row(tmp_path):
    offsets = pa.py_buffer(np.array([0, 2, 4, 6], np.int32))
    chosen = pa.Array.from_buffers(pa.string(), 3, [None, offsets, pa.py_buffer(b"okok\xff\xfe")])
    pq.write_table(
        pa.table({"prompt": ["a", "b", "c"], "chosen": chosen, "rejected": ["x", "y", "z"]}), tmp_path / "bad.parquet"
    )
    from skyfilter.io import InputError

    with pytest.raises(InputError, match=r"bad.parquet, column chosen: row 2 \(0-based\): text is not valid UTF-8"):
        run_dedup([str(tmp_path / "bad.parquet")], DedupOptions(), out=str(tmp_path / "k.parquet"), batch_rows=2)
    assert not (tmp_path / "k.parquet").exists()


def test_pairs_whose_answers_are_not_read_are_refused_under_key_pair(shared_data, tmp_path):
    """The real HH audit file names its answers chosen_response and rejected_response, so only its prompt column is
    read: under --key pair its pairs with one prompt and other answers would go as duplicates. Refused in one line,
    nothing written; --key prompt deduplicates the prompts as asked."""
    source = shared_data / "prefs/hh_harmless_audit_labels/df_labeledharmlessoutputs_second_pass.csv"
    code, output = run_cli("dedup", source, "--out", tmp_path / "k.parquet", "-q")
    assert code == 1 and "columns ['chosen_response', 'rejected_response'] look like answers" in output
    assert "--key prompt" in output and list(tmp_path.iterdir()) == []
    code, output = run_cli("dedup", source, "--key", "prompt", "--out", tmp_path / "k.parquet", "-q")
    assert code == 0 and pq.read_metadata(tmp_path / "k.parquet").num_rows < 1000
    prompts = tmp_path / "prompts.jsonl"  # a file of prompts alone (and an id) is still deduplicated by its prompts
    prompts.write_text("".join(json.dumps({"id": i, "prompt": p}) + "\n" for i, p in enumerate("aab")))
    code, output = run_cli("dedup", prompts, "--out", tmp_path / "p.parquet", "--no-near", "-q")
    assert code == 0 and pq.read_table(tmp_path / "p.parquet").column("id").to_pylist() == [0, 2]


def test_cli_verify_exact_joins_by_the_exact_jaccard(tmp_path):
    """Prompts of 10 distinct words (shingles of one word): b shares 9 with a (J = 9/11), c shares 8 with both
    (J = 8/12 < 0.7). With 8 one-value bands every pair is a candidate; verified exactly, b joins a and c stays.
    (With these words the estimate passes c, 8 positions being too few to tell 0.67 from 0.7: it drops c too.)"""
    words = [f"w1x{i}" for i in range(10)]
    a, b, c = words, [*words[:9], "other"], [*words[:8], "more", "most"]
    rows = [(" ".join(p), "fine answer", "bad answer") for p in (a, b, c)]
    write_pairs(tmp_path / "in.parquet", rows)
    args = ["--key", "prompt", "--shingle", "1", "--num-perm", "8", "--bands", "8", "--rows-per-band", "1"]
    code, output = run_cli("dedup", tmp_path / "in.parquet", "--out", tmp_path / "kept.parquet", "--report",
                           tmp_path / "report.json", *args, "--verify", "exact")  # fmt: skip
    assert code == 0, output
    assert "exact verification" in output
    assert pq.read_table(tmp_path / "kept.parquet").column("prompt").to_pylist() == [rows[0][0], rows[2][0]]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["method"]["verify"] == "exact" and report["dropped"]["near_duplicate"] == 1
    code, _ = run_cli("dedup", tmp_path / "in.parquet", "--out", tmp_path / "estimated.parquet", *args, "-q")
    assert code == 0 and pq.read_table(tmp_path / "estimated.parquet").num_rows == 1
    code, output = run_cli("dedup", tmp_path / "in.parquet", "--out", tmp_path / "x.parquet", "--verify", "exactly")
    assert code == 2 and "'exactly' is not one of 'estimate', 'exact'" in output


def test_verify_exact_is_refused_on_ray():
    from skyfilter.ray.deduplication import run

    with pytest.raises(ValueError, match="verify 'exact' runs on the local engine only"):
        run(["in.parquet"], DedupOptions(verify="exact"))
    with pytest.raises(ValueError, match="verify must be one of estimate, exact"):
        DedupOptions(verify="exactly")


def test_inputs_by_path_and_named_apart(tmp_path, monkeypatch):
    """The file-level functions take one path (str or pathlib) or a list; two files of the same name are named by
    their paths in the outputs and the report (the CLI's too); one file given twice is refused; a table or options
    of the wrong type is a TypeError that says what to pass."""
    from pathlib import Path

    from skyfilter import run_select
    from skyfilter.convert import run_convert
    from skyfilter.io import InputError
    from skyfilter.select import SelectOptions

    monkeypatch.chdir(tmp_path)
    rows = [{"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(4)]
    for folder, part in (("a", rows), ("b", rows[:2] + [{"prompt": "q", "chosen": "d", "rejected": "e"}])):
        Path(folder).mkdir()
        Path(folder, "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    report = run_dedup(["a/train.jsonl", Path("b/train.jsonl")], None, dropped="dd.jsonl", progress=False)
    assert report.inputs == ["a/train.jsonl", "b/train.jsonl"] and report.dropped["exact_duplicate"] == 2
    dropped = [json.loads(line) for line in Path("dd.jsonl").read_text().splitlines()]
    assert [(d["input_file"], d["duplicate_of_file"]) for d in dropped] == [("b/train.jsonl", "a/train.jsonl")] * 2
    code, _ = run_cli("dedup", "a/train.jsonl", "b/train.jsonl", "--report", "r.json", "-q")
    assert code == 0 and json.loads(Path("r.json").read_text())["inputs"] == ["a/train.jsonl", "b/train.jsonl"]
    assert run_dedup(Path("a/train.jsonl"), progress=False).inputs == ["train.jsonl"]
    assert run_select("a/train.jsonl", SelectOptions(), progress=False).kept == 4
    assert run_convert(Path("a/train.jsonl"), "pairs.parquet", progress=False).rows == 4
    with pytest.raises(InputError, match="a/train.jsonl: given twice as an input"):
        run_dedup(["a/train.jsonl", "./a/train.jsonl"], progress=False)
    with pytest.raises(TypeError, match="inputs must be a path or a list of paths .* not a Table; tables go to"):
        run_dedup(pa.table({"prompt": ["p"]}))
    with pytest.raises(TypeError, match="options must be a DedupOptions, not a dict"):
        run_dedup("a/train.jsonl", {"key": "prompt"})
    with pytest.raises(TypeError, match="options must be a SelectOptions, not a NoneType"):
        run_select("a/train.jsonl", None)
