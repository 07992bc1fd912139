"""The Rust matcher against the pure-Python reference, and the contaminate() API."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import skyfilter
from hypothesis import given, settings
from hypothesis import strategies as st
from skyfilter import Benchmark, _core
from skyfilter.contaminate import PRESETS, Matcher, run

from tests.skyfilter.reference import reference_match, reference_short_copies

# A small vocabulary makes shared n-grams common; the rest adds Unicode, punctuation runs and 1-char tokens.
VOCAB = ["the", "The", "cat", "CAT", "sat", "on", "mat", "a", "I", "x", "ÉTÉ", "été", "straße", "İs", "ΣΑΣ", "_", "42"]
SEPARATORS = [" ", "  ", "\n", ", ", "... ", "!?", " -- ", "\t", "'", "\u3000"]
token = st.one_of(
    st.sampled_from(VOCAB), st.text(st.characters(exclude_categories=("Cs", "Cn")), min_size=1, max_size=4)
)
text = st.lists(st.tuples(token, st.sampled_from(SEPARATORS)), max_size=25).map(
    lambda parts: "".join(t + s for t, s in parts)
)
maybe_text = st.one_of(st.none(), st.just(""), text)


def run_rust(rows, bench, tokenizer, n, threshold, threads=1, counts="all"):
    index = _core.BenchmarkIndex([pa.array(bench, pa.string())], tokenizer=tokenizer, n=n)
    flat = [t for texts in rows for t in texts]
    bounds = np.concatenate([[0], np.cumsum([len(texts) for texts in rows])]).astype(np.int64)
    texts, bounds = pa.array(flat, pa.string()), pa.array(bounds)
    result = index.match_rows(texts, bounds, threshold=threshold, threads=threads, counts=counts)
    groups = result.column("matched_groups").to_pylist()
    return index, [
        {
            "n_ngrams": r["n_ngrams"],
            "matched": set(index.ngram_texts(pa.array(g, pa.uint32())).to_pylist()),
            "overlap": r["overlap"],
            "flagged": r["flagged"],
        }
        for r, g in zip(result.to_pylist(), groups, strict=True)
    ]


@settings(max_examples=250, deadline=None)
@given(
    bench=st.lists(maybe_text, min_size=1, max_size=6),
    rows=st.lists(st.lists(maybe_text, max_size=3), max_size=12),
    preset=st.sampled_from(sorted(PRESETS)),
    small_n=st.integers(1, 4),
    use_small_n=st.booleans(),
    data=st.data(),
)
def test_matcher_equals_reference(bench, rows, preset, small_n, use_small_n, data):
    p = PRESETS[preset]
    n = small_n if use_small_n else p.ngram
    # Splice benchmark text into some rows so that hits are frequent, not only chance.
    real = [b for b in bench if b]
    if real:
        for texts in rows:
            if texts and data.draw(st.booleans()):
                texts[0] = (texts[0] or "") + " " + data.draw(st.sampled_from(real))
    _, got = run_rust(rows, bench, p.tokenizer, n, p.threshold)
    expected = reference_match(rows, bench, p.tokenizer, n, p.threshold)
    assert got == expected
    # Counting matched rows only: the same flags, matches and overlaps; the others' count left out (null) unless
    # they have no n-gram at all.
    _, matched_only = run_rust(rows, bench, p.tokenizer, n, p.threshold, counts="matched")
    for row in expected:
        if not row["matched"] and row["n_ngrams"]:
            row["n_ngrams"] = None
    assert matched_only == expected


@settings(max_examples=150, deadline=None)
@given(
    bench=st.lists(maybe_text, min_size=1, max_size=6),
    rows=st.lists(st.lists(maybe_text, max_size=3), max_size=12),
    preset=st.sampled_from(sorted(PRESETS)),
    n=st.integers(2, 6),
    data=st.data(),
)
def test_short_prompts_are_matched_whole_as_the_reference(bench, rows, preset, n, data):
    p = PRESETS[preset]
    # Copy benchmark prompts into some texts, changing case and punctuation only, so that copies are frequent.
    for texts in rows:
        if texts and data.draw(st.booleans()):
            copied = data.draw(st.sampled_from(bench)) or ""
            texts[data.draw(st.integers(0, len(texts) - 1))] = "  " + copied.upper().replace(" ", " ,, ") + "?!"
    if not rows:
        return
    flat = [t for texts in rows for t in texts]
    bounds = pa.array(np.concatenate([[0], np.cumsum([len(texts) for texts in rows])]).astype(np.int64))
    matchers = {short: Matcher([Benchmark("b", pa.array(bench, pa.string()))], preset, n,
                                                     match_short=short) for short in (False, True)}  # fmt: skip
    ngram_only, got = (m.match_rows(pa.array(flat, pa.string()), bounds) for m in matchers.values())
    copies = reference_short_copies(rows, bench, p.tokenizer, n)
    expected = reference_match(rows, bench, p.tokenizer, n, p.threshold)
    m = matchers[True]
    for r, (row, copied) in enumerate(zip(expected, copies, strict=True)):
        assert got.column("flagged")[r].as_py() == (row["flagged"] or bool(copied))
        matched = set(m.ngram_texts(got.column("matched_groups")[r].values).to_pylist())
        assert matched == row["matched"] | copied
        for column in ("n_ngrams", "n_matched", "overlap"):  # the n-gram measures as they were
            assert got.column(column)[r] == ngram_only.column(column)[r]
        if copied and not row["flagged"]:  # the evidence is the copied prompt
            assert m.ngram_texts(np.array([got.column("first_group")[r].as_py()]))[0].as_py() in copied
        elif row["flagged"]:
            assert got.column("first_group")[r] == ngram_only.column("first_group")[r]
    postings = m.postings(np.arange(m.n_groups))  # every group has its benchmark rows
    assert set(postings.column("group").to_pylist()) == set(range(m.n_groups))


@settings(max_examples=50, deadline=None)
@given(bench=st.lists(text, min_size=1, max_size=4), rows=st.lists(st.lists(text, max_size=2), max_size=300))
def test_threads_do_not_change_results(bench, rows):
    _, one = run_rust(rows, bench, "words", 2, 0.0, threads=1)
    _, two = run_rust(rows, bench, "words", 2, 0.0, threads=2)
    assert one == two


def test_threshold_and_overlap_follow_the_palm_rule():
    bench = ["one two three four five six seven eight nine ten"]
    rows = [
        ["one two three four five six seven eight nine ten eleven"],
        ["one two three four five six seven eight x y z w"],
    ]
    _, got = run_rust(rows, bench, "whitespace", 8, 0.7)
    assert [r["overlap"] for r in got] == [3 / 4, 1 / 5]
    assert [r["flagged"] for r in got] == [True, False]


def test_string_layouts_match_alike():
    index = _core.BenchmarkIndex([pa.array(["aa bb cc dd"])], n=2)
    for typ in (pa.string(), pa.large_string(), pa.string_view()):
        result = index.match_rows(pa.array(["xx aa bb", None], typ))
        assert result.column("flagged").to_pylist() == [True, False]


def test_the_workers_parts_read_as_one_table():
    # Past 4,096 rows the rows are matched in parts, one a worker's range; the bindings read the parts into one
    # table. Its rows and their matched groups must not depend on the threads, nor on a row's place.
    index = _core.BenchmarkIndex([pa.array(["aa bb cc dd ee", "ff gg hh"])], n=2)
    rows = [f"x{i} aa bb y{i} gg hh cc dd" if i % 3 else f"x{i} nothing here" for i in range(10_000)]
    one, two = (index.match_rows(pa.array(rows), threads=t) for t in (1, 2))
    assert one.equals(two)
    groups = two.column("matched_groups").to_pylist()
    texts = [index.ngram_texts(pa.array(g, pa.uint32())).to_pylist() for g in groups[9_995:]]
    assert [bool(t) for t in texts] == [bool(i % 3) for i in range(9_995, 10_000)]
    assert all(t == ["aa bb", "gg hh", "cc dd"] for t in texts if t)
    assert two.column("n_matched").to_pylist() == [len(g) for g in groups]


def test_bad_kernel_arguments_are_clear_errors():
    index = _core.BenchmarkIndex([pa.array(["aa bb cc"])], n=2)
    with pytest.raises(_core.SkyfilterError, match="string array"):
        index.match_rows(pa.array([1, 2]))
    with pytest.raises(_core.SkyfilterError, match="threshold"):
        index.match_rows(pa.array(["aa"]), threshold=1.5)
    with pytest.raises(_core.SkyfilterError, match="counts must be"):
        index.match_rows(pa.array(["aa"]), counts="some")
    with pytest.raises(_core.SkyfilterError, match="row bounds"):
        index.match_rows(pa.array(["aa"]), pa.array([0, 5], pa.int64()))
    with pytest.raises(_core.SkyfilterError, match="n-gram size"):
        _core.BenchmarkIndex([pa.array(["aa"])], n=0)
    bad = pa.Array.from_buffers(
        pa.string(), 2, [None, pa.py_buffer(np.array([0, 1, 3], np.int32)), pa.py_buffer(b"a\xff\xfe")]
    )
    with pytest.raises(_core.InvalidTextError) as e:
        index.match_rows(bad)
    assert e.value.args == ("row 1: text is not valid UTF-8", 1, "text is not valid UTF-8")


BENCH = Benchmark(
    "toy",
    pa.array(["Write a short poem about the ocean at night please", "What is the capital city of France today?"]),
    pa.array(["chat", "qa"]),
)


def test_contaminate_api_returns_one_row_per_input_row_with_evidence():
    table = pa.table(
        {
            "prompt": ["Could you write a short poem about the ocean at night please", "Unrelated", None],
            "chosen": ["a", "b", "c"],
            "rejected": ["d", "e", "f"],
        }
    )
    out = skyfilter.contaminate(table, BENCH)
    assert out.num_rows == 3
    assert out.column("flagged").to_pylist() == [True, False, False]
    row = out.to_pylist()[0]
    assert (row["bench_name"], row["bench_row"], row["bench_subset"]) == ("toy", 0, "chat")
    assert row["matched_ngram"] == "write short poem about the ocean at"
    assert out.column("bench_name").to_pylist()[1:] == [None, None]
    # polars and Arrow streams give the same answer, as what they were
    assert skyfilter.contaminate(pl.from_arrow(table), BENCH).equals(pl.from_arrow(out))
    stream = skyfilter.contaminate(pa.RecordBatchReader.from_batches(table.schema, table.to_batches()), BENCH)
    assert isinstance(stream, pa.RecordBatchReader) and stream.read_all().equals(out)


def test_contaminate_api_matches_prompts_too_short_for_an_ngram_when_asked():
    bench = Benchmark("short", pa.array(["Capital of France?", "Hi", "", None]))
    prompts = ["capital of FRANCE", "capital of France, please", "hi!!", "HI", None, ""]
    table = pa.table({"prompt": prompts, "chosen": ["a"] * 6, "rejected": ["b"] * 6})
    assert not any(skyfilter.contaminate(table, bench).column("flagged").to_pylist())  # the reference method
    got = skyfilter.contaminate(table, bench, match_short=True)
    assert got.column("flagged").to_pylist() == [True, False, True, True, False, False]
    assert got.column("matched_ngram").to_pylist() == ["capital of france", None, "hi", "hi", None, None]
    assert got.column("bench_row").to_pylist()[:4] == [0, None, 1, 1] and set(got.column("overlap").to_pylist()) == {0}
    # a short prompt copied by more rows than ignore_common is generic, as an n-gram is
    common = skyfilter.contaminate(table, bench, match_short=True, ignore_common=1)
    assert common.column("flagged").to_pylist() == [True, False, False, False, False, False]
    assert skyfilter.contaminate(pl.from_arrow(table), bench, match_short=True).equals(pl.from_arrow(got))


def test_fields_all_refuses_answers_it_would_not_read(shared_data):
    """--fields all on a file read as prompts alone (answers in chosen_response / rejected_response) matched the
    prompts only, as --fields prompt does, without a word; the default --fields prompt reads it as before."""
    audit = skyfilter.read_table(
        shared_data / "prefs/hh_harmless_audit_labels/df_labeledharmlessoutputs_second_pass.csv"
    )
    unmatched = r"table: --fields all would leave the answers unmatched: columns \['chosen_response', 'rejected_"
    with pytest.raises(skyfilter.InputError, match=unmatched):
        skyfilter.contaminate(audit, BENCH, fields="all")
    assert skyfilter.contaminate(audit, BENCH).num_rows == audit.num_rows


def test_contaminate_api_can_count_matched_rows_only():
    poem = "Could you write a short poem about the ocean at night please"
    prompts = [poem, "one two three four five six seven", "No"]
    table = pa.table({"prompt": prompts, "chosen": ["a", "b", "c"], "rejected": ["d", "e", "f"]})
    every = skyfilter.contaminate(table, BENCH)
    matched = skyfilter.contaminate(table, BENCH, counts="matched")
    assert every.column("n_ngrams").to_pylist() == [5, 1, 0]
    assert matched.column("n_ngrams").to_pylist() == [5, None, 0]  # not counted: no match; 0: no n-gram at all
    assert matched.drop_columns(["n_ngrams"]).equals(every.drop_columns(["n_ngrams"]))
    with pytest.raises(_core.SkyfilterError, match="counts must be"):
        skyfilter.contaminate(table, BENCH, counts="some")


def test_ignore_common_drops_generic_ngrams_only():
    generic = "what are the most effective ways to"
    bench = Benchmark("b", pa.array([f"{generic} sleep better at night without pills"]))
    table = pa.table(
        {"prompt": [f"{generic} learn French", f"{generic} save money", f"{generic} sleep better at night"]}
    )
    plain = skyfilter.contaminate(table, bench)
    assert plain.column("flagged").to_pylist() == [True, True, True]
    ignored = skyfilter.contaminate(table, bench, ignore_common=2)
    # The generic 7-gram occurs in 3 rows (> 2) and is ignored; row 2 still shares specific n-grams.
    assert ignored.column("flagged").to_pylist() == [False, False, True]
    assert ignored.column("matched_ngram")[2].as_py() != generic


def test_fields_choose_what_is_matched():
    table = pa.table(
        {
            "prompt": [[{"role": "system", "content": "What is the capital city of France today?"},
                        {"role": "user", "content": "hello there"}]],
            "chosen": [[{"role": "assistant", "content": "Write a short poem about the ocean at night please"}]],
            "rejected": [[{"role": "assistant", "content": "no"}]],
        }
    )  # fmt: skip
    flags = {
        f: skyfilter.contaminate(table, BENCH, fields=f).column("flagged")[0].as_py()
        for f in ("prompt", "conversation", "all")
    }
    assert flags == {"prompt": False, "conversation": True, "all": True}
    answer_only = table.set_column(0, "prompt", pa.array([[{"role": "user", "content": "hi"}]]))
    assert skyfilter.contaminate(answer_only, BENCH, fields="all").column("bench_row")[0].as_py() == 0
    assert not skyfilter.contaminate(answer_only, BENCH, fields="conversation").column("flagged")[0].as_py()


def test_api_argument_errors():
    table = pa.table({"prompt": ["x"]})
    with pytest.raises(ValueError, match="unknown preset"):
        skyfilter.contaminate(table, BENCH, preset="nope")
    with pytest.raises(ValueError, match="fields"):
        skyfilter.contaminate(table, BENCH, fields="answers")
    with pytest.raises(TypeError, match="Arrow"):
        skyfilter.contaminate([1, 2], BENCH)


def test_report_counts_each_flagged_row_once_per_benchmark(tmp_path):
    # One prompt in three subsets: a row matching it is one flagged row of the benchmark (and one of each subset),
    # not one per subset.
    prompt = "write a short poem about the ocean at night please"
    bench = Benchmark("b", pa.array([prompt, prompt, prompt, "unrelated words"]), pa.array(["x", "y", "z", "x"]))
    src = tmp_path / "in.parquet"
    prompts = [prompt, "nothing in common here", prompt.upper()]
    pq.write_table(pa.table({"prompt": prompts, "chosen": ["c"] * 3, "rejected": ["r"] * 3}), src)
    report = run([str(src)], [bench], report=str(tmp_path / "report.json"), progress=False)
    assert report.flagged == 2
    entry = report.benchmarks["b"]
    assert entry["flagged_rows"] == 2
    assert {s: c["flagged_rows"] for s, c in entry["per_subset"].items()} == {"x": 2, "y": 2, "z": 2}
