"""Select: every rule against a polars reference (hypothesis tables, real UltraFeedback and Magpie scores, a
synthetic 100K-row Magpie-like table with ties), determinism across threads and batch sizes, and bad input."""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skyfilter import read_table
from skyfilter.io import InputError, open_source
from skyfilter.select import ADDED_COLUMNS, REASONS, SelectOptions, run_select, select_table

from tests.skyfilter.cli_helpers import assert_fails_cleanly as shared_assert_fails_cleanly
from tests.skyfilter.cli_helpers import run_cli

# ------------------------------------------------------------------------------------------ reference


def _col(df: pl.DataFrame, name: str) -> pl.Expr:
    if name in df.columns:
        return pl.col(name)
    head, _, rest = name.partition(".")
    return pl.col(head).struct.field(rest)


def polars_reasons(df: pl.DataFrame, o: SelectOptions) -> list[str]:
    """The rule that drops each row (or "kept"), written directly in polars from the documented rules.
    Chosen / rejected texts (for the length ratio) are the plain string columns ``chosen`` and ``rejected``."""

    def num(name: str) -> pl.Expr:
        return _col(df, name).cast(pl.Float64)

    def within(x: pl.Expr, low, high) -> pl.Expr:
        ok = pl.lit(True)
        if low is not None:
            ok &= x >= low
        if high is not None:
            ok &= x <= high
        return ok

    chosen_bounds = o.min_chosen is not None or o.max_chosen is not None
    rejected_bounds = o.min_rejected is not None or o.max_rejected is not None
    margin = o.min_margin is not None or o.max_margin is not None
    read = []
    if chosen_bounds or margin:
        read.append(o.chosen_score)
    if rejected_bounds or margin:
        read.append(o.rejected_score)
    if o.rm_chosen:
        read += [o.rm_chosen, o.rm_rejected]
    if o.score:
        read.append(o.score)
    missing = pl.any_horizontal([num(c).is_null() | num(c).is_nan() for c in read]) if read else pl.lit(False)
    c_len, r_len = pl.col("chosen").str.len_chars(), pl.col("rejected").str.len_chars()
    ratio = pl.when((c_len == 0) & (r_len == 0)).then(1.0).otherwise(c_len / r_len)

    rule = pl.when(missing).then(pl.lit("missing_score"))
    if chosen_bounds:
        rule = rule.when(~within(num(o.chosen_score), o.min_chosen, o.max_chosen)).then(pl.lit("chosen_score"))
    if rejected_bounds:
        rule = rule.when(~within(num(o.rejected_score), o.min_rejected, o.max_rejected)).then(pl.lit("rejected_score"))
    if margin:
        rule = rule.when(~within(num(o.chosen_score) - num(o.rejected_score), o.min_margin, o.max_margin)).then(
            pl.lit("margin")
        )
    if o.rm_chosen:
        rule = rule.when(num(o.rm_chosen) <= num(o.rm_rejected)).then(pl.lit("rm_agreement"))
    if o.min_length_ratio is not None or o.max_length_ratio is not None:
        rule = rule.when(~within(ratio, o.min_length_ratio, o.max_length_ratio)).then(pl.lit("length_ratio"))
    out = df.with_row_index("row").with_columns(reason=rule.otherwise(pl.lit("kept")))

    if o.fractions or o.default_fraction is not None:
        offset = pl.lit(0.0)
        if o.offset_by:
            offset = _col(df, o.offset_by).cast(pl.String).replace_strict(o.offsets, return_dtype=pl.Float64)
        group = _col(df, o.group_by).cast(pl.String) if o.group_by else pl.lit("(all)")
        default = 1.0 if o.default_fraction is None else o.default_fraction
        ranked = (
            out.filter(pl.col("reason") == "kept")
            .with_columns(adjusted=num(o.score) + offset + 0.0, group=group)
            .sort(["adjusted", "row"], descending=[True, False])
            .with_columns(
                position=pl.int_range(pl.len()).over("group"),
                n=pl.len().over("group"),
                fraction=pl.col("group").replace_strict(o.fractions, default=default, return_dtype=pl.Float64),
            )
            .with_columns(fraction=pl.col("fraction").fill_null(default))
        )
        cut = ranked.filter(pl.col("position") >= (pl.col("fraction") * pl.col("n") * (1 - 1e-12)).ceil())
        out = out.with_columns(
            reason=pl.when(pl.col("row").is_in(cut["row"].implode())).then(pl.lit("top_fraction")).otherwise("reason")
        )
    return out["reason"].to_list()


def reasons_of(table: pa.Table, options: SelectOptions, threads: int | None = None) -> list[str]:
    selection = select_table(table, options, threads=threads)
    kept, dropped, report = selection.kept(), selection.dropped(), selection.report
    reasons = ["kept"] * table.num_rows
    for row, reason in zip(dropped["input_row"].to_pylist(), dropped["reason"].to_pylist(), strict=True):
        reasons[row] = reason
    assert reasons == selection.reasons.to_pylist()
    assert kept.num_rows == report.kept == reasons.count("kept")
    assert kept.num_rows + dropped.num_rows == table.num_rows == report.rows
    return reasons


# ------------------------------------------------------------------------------------------ properties

SCORES = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 1.0, 2.5, -1.0, 3.0]), st.none(), st.just(math.nan))


@st.composite
def tables_and_options(draw):
    n = draw(st.integers(0, 60))
    col = lambda values: draw(st.lists(values, min_size=n, max_size=n))  # noqa: E731
    table = pa.table(
        {
            "prompt": pa.array(["q"] * n, pa.string()),
            "chosen": pa.array(col(st.text(alphabet="ab é", max_size=6)), pa.string()),
            "rejected": pa.array(col(st.text(alphabet="ab é", max_size=6)), pa.string()),
            "s_c": pa.array(col(SCORES), pa.float64()),
            "s_r": pa.array(col(SCORES), pa.float64()),
            "rank": pa.array(col(SCORES), pa.float64()),
            "cat": pa.array(col(st.sampled_from(["x", "y", "z", None])), pa.string()),
            "gen": pa.array(col(st.sampled_from(["air", "pro", "ultra"])), pa.string()),
            "rm": pa.array(col(st.sampled_from([0.0, 1.0, 2.0])), pa.float64()),
        }
    )
    bound = st.one_of(st.none(), st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0]))
    ratio = st.one_of(st.none(), st.sampled_from([0.5, 1.0, 2.0]))
    low_high = lambda b: draw(st.tuples(b, b).map(sorted_pair))  # noqa: E731
    ranked = draw(st.booleans())
    grouped = ranked and draw(st.booleans())
    offsets = ranked and draw(st.booleans())
    fraction = st.sampled_from([0.0, 0.1, 0.3, 0.5, 1.0])
    min_chosen, max_chosen = low_high(bound)
    min_rejected, max_rejected = low_high(bound)
    min_margin, max_margin = low_high(bound)
    min_ratio, max_ratio = low_high(ratio)
    present_groups = sorted({c for c in table["cat"].to_pylist() if c is not None}) if grouped else []
    rm = draw(st.booleans())
    options = SelectOptions(
        score="rank" if ranked else None,
        group_by="cat" if grouped else None,
        fractions=draw(st.dictionaries(st.sampled_from(present_groups), fraction)) if present_groups else {},
        default_fraction=draw(st.one_of(st.none(), fraction)) if grouped else (draw(fraction) if ranked else None),
        offset_by="gen" if offsets else None,
        offsets={"air": -0.5, "pro": -0.25, "ultra": 0.0} if offsets else {},
        chosen_score="s_c",
        rejected_score="s_r",
        min_chosen=min_chosen,
        max_chosen=max_chosen,
        min_rejected=min_rejected,
        max_rejected=max_rejected,
        min_margin=min_margin,
        max_margin=max_margin,
        min_length_ratio=min_ratio,
        max_length_ratio=max_ratio,
        rm_chosen="rm" if rm else None,
        rm_rejected="s_r" if rm else None,
        missing="drop",
    )
    return table, options, draw(st.sampled_from([1, 2]))


def sorted_pair(pair):
    a, b = pair
    return (a, b) if a is None or b is None or a <= b else (b, a)


@settings(max_examples=300, deadline=None)
@given(tables_and_options())
def test_selection_equals_the_polars_reference(case):
    table, options, threads = case
    assert reasons_of(table, options, threads) == polars_reasons(pl.from_arrow(table), options)


def test_missing_scores_are_an_error_by_default():
    table = pa.table({"prompt": ["q"] * 3, "chosen": ["a"] * 3, "rejected": ["b"] * 3, "s": [1.0, None, math.nan]})
    with pytest.raises(InputError, match=r"table: row 1 \(0-based\): column 's' is null or NaN"):
        select_table(table, SelectOptions(score="s", default_fraction=0.5))
    assert reasons_of(table, SelectOptions(score="s", default_fraction=0.5, missing="drop")) == [
        "kept",
        "missing_score",
        "missing_score",
    ]


# ------------------------------------------------------------------------------------------ real data


def ultrafeedback(shared_data) -> pa.Table:
    folder = shared_data / "prefs/ultrafeedback_binarized_1200"
    table = pa.concat_tables([read_table(folder / "train_clean.jsonl"), read_table(folder / "eval_clean.jsonl")])
    # A grouping stand-in (the sample has no categories): the source row index modulo 3.
    bucket = pa.array([f"b{i % 3}" for i in table["source_index"].to_pylist()])
    return table.append_column("bucket", bucket)


UF_RULES = [
    dict(min_margin=1.0),
    dict(min_chosen=7.0, max_rejected=5.0),
    dict(min_margin=0.5, max_margin=6.0, min_length_ratio=0.5, max_length_ratio=2.0),
    dict(score="metadata.score_chosen", default_fraction=0.3),
    dict(
        score="metadata.score_chosen",
        group_by="bucket",
        fractions={"b0": 0.3, "b1": 0.1},
        default_fraction=0.5,
        offset_by="bucket",
        offsets={"b0": 0.0, "b1": -0.5, "b2": 0.25},
        min_margin=1.0,
    ),  # fmt: skip
    dict(rm_chosen="metadata.score_chosen", rm_rejected="metadata.score_rejected"),
]


@pytest.mark.parametrize("rules", UF_RULES)
def test_ultrafeedback_scores_match_polars(shared_data, rules):
    table = ultrafeedback(shared_data)
    options = SelectOptions(chosen_score="metadata.score_chosen", rejected_score="metadata.score_rejected", **rules)
    ours = reasons_of(table, options)
    assert ours == polars_reasons(pl.from_arrow(table), options)
    assert 0 < ours.count("kept") < table.num_rows


def test_magpie_armorm_scores_match_a_python_reference(shared_data):
    path = shared_data / "prefs/magpie_po_example/example_instructions_5res_armorm.json"
    rows = json.loads(path.read_text())
    table = read_table(path)  # rewards_armorm: list<struct<score: double>>, as on the hub
    armorm = [[r["score"] for r in row["rewards_armorm"]] for row in rows]
    difficulty = [row["difficulty"] for row in rows]
    offsets = {"very easy": 0.0, "easy": -0.01, "medium": -0.02, "hard": 0.0, "very hard": 0.0}
    options = SelectOptions(score="rewards_armorm.score", group_by="task_category",
                            fractions={"Coding & Debugging": 0.5}, offset_by="difficulty", offsets=offsets)  # fmt: skip
    selection = select_table(table, options)
    kept, dropped, report = selection.kept(), selection.dropped(), selection.report
    # Reference: the mean of the five scores plus the offset; per category keep ceil(f * n), best first.
    adjusted = [statistics.fmean(a) + offsets[d] for a, d in zip(armorm, difficulty, strict=True)]
    expected = set()
    for category in {row["task_category"] for row in rows}:
        members = sorted((i for i, row in enumerate(rows) if row["task_category"] == category),
                         key=lambda i: (-adjusted[i], i))  # fmt: skip
        expected |= set(members[: math.ceil(options.fraction(category) * len(members) * (1 - 1e-12))])
    assert set(kept["uuid"].to_pylist()) == {rows[i]["uuid"] for i in expected}
    for row, score in zip(dropped["input_row"].to_pylist(), dropped["adjusted_score"].to_pylist(), strict=True):
        assert score == pytest.approx(adjusted[row], abs=1e-12)
    assert report.kept == len(expected) == 3 and report.dropped["top_fraction"] == 2


# ------------------------------------------------------------------------------------------ synthetic Magpie

MAGPIE_MIX = {"Math": 29657, "Coding & debugging": 8193, "Information seeking": 7837, "Advice seeking": 4546,
              "Reasoning": 3854, "Planning": 2185, "Brainstorming": 1081, "Creative writing": 794,
              "Data analysis": 725, "Editing": 337, "Role playing": 330}  # fmt: skip
GENERATORS = {"Magpie-Air": -0.10, "Magpie-Pro": -0.05, "Magpie-Pro-3.1": 0.0, "Magpie-Ultra": 0.0}
RECIPE = dict(score="armorm_mean", group_by="task_category", fractions={"Math": 0.3, "Coding & debugging": 0.3},
              default_fraction=0.1, offset_by="generator", offsets=GENERATORS)  # fmt: skip


def magpie_like(rows: int, seed: int = 0) -> pa.Table:
    """Magpie-like rows: categories in the paper's mix, four generators, ArmoRM-like scores rounded to 1/256
    (many ties, as bf16 ArmoRM scores have), chosen / rejected scores and texts of varied length."""
    rng = np.random.default_rng(seed)
    weights = np.array(list(MAGPIE_MIX.values()), dtype=float)
    category = rng.choice(list(MAGPIE_MIX), size=rows, p=weights / weights.sum())
    generator = rng.choice(list(GENERATORS), size=rows)
    base = rng.normal(0.12, 0.03, size=rows)
    responses = np.round((base[:, None] + rng.normal(0, 0.01, size=(rows, 5))) * 256) / 256
    words = np.array(["the", "answer", "é", "x=1", "step"])
    lengths = rng.integers(0, 40, size=(rows, 2))
    text = lambda n: " ".join(words[rng.integers(0, len(words), size=n)])  # noqa: E731
    return pa.table(
        {
            "prompt": [f"q{i % 5000}" for i in range(rows)],
            "chosen": [text(n) for n in lengths[:, 0]],
            "rejected": [text(n) for n in lengths[:, 1]],
            "task_category": category,
            "generator": generator,
            "armorm_mean": np.round(responses.mean(axis=1) * 256) / 256,
            "armorm": pa.FixedSizeListArray.from_arrays(pa.array(responses.ravel()), 5),
            "score_chosen": responses.max(axis=1),
            "score_rejected": responses.min(axis=1),
            "rm_chosen": np.round(rng.normal(size=rows), 1),
            "rm_rejected": np.round(rng.normal(size=rows), 1),
        }
    )


@pytest.fixture(scope="module")
def magpie_100k() -> pa.Table:
    return magpie_like(100_000)


@pytest.mark.parametrize(
    "rules",
    [
        RECIPE,
        {**RECIPE, "score": "armorm", "min_margin": 0.01, "max_length_ratio": 3.0},
        {**RECIPE, "min_chosen": 0.1, "rm_chosen": "rm_chosen", "rm_rejected": "rm_rejected"},
    ],
    ids=["recipe", "list-mean-margin-length", "thresholds-rm"],
)
def test_synthetic_magpie_matches_polars(magpie_100k, rules):
    options = SelectOptions(chosen_score="score_chosen", rejected_score="score_rejected", **rules)
    ours = reasons_of(magpie_100k, options, threads=2)
    df = pl.from_arrow(magpie_100k)
    if options.score == "armorm":  # the reference takes the mean itself
        df = df.with_columns(armorm=pl.col("armorm").arr.mean())
    assert ours == polars_reasons(df, options)
    assert ours.count("top_fraction") > 0


def test_same_output_for_threads_and_batch_sizes(tmp_path, magpie_100k):
    table = magpie_100k.slice(0, 30_000)
    pq.write_table(table, tmp_path / "magpie.parquet", row_group_size=7_000)
    pl.from_arrow(table).write_ndjson(tmp_path / "magpie.jsonl")  # a different reader as well
    options = SelectOptions(chosen_score="score_chosen", rejected_score="score_rejected", max_length_ratio=4.0,
                            **RECIPE)  # fmt: skip
    results = []
    for name, threads, batch_rows in [("magpie.parquet", 1, 65_536), ("magpie.parquet", 2, 997),
                                      ("magpie.parquet", 2, 4096), ("magpie.jsonl", 1, 30_000)]:  # fmt: skip
        out, dropped = tmp_path / f"k{threads}-{batch_rows}.parquet", tmp_path / f"d{threads}-{batch_rows}.parquet"
        report = run_select([str(tmp_path / name)], options, out=str(out), dropped=str(dropped), threads=threads,
                            batch_rows=batch_rows, progress=False)  # fmt: skip
        kept_rows = pq.read_table(out).select(["prompt", "chosen", "armorm_mean"])
        drops = pq.read_table(dropped).select(["input_row", "reason", "adjusted_score"])
        results.append((kept_rows, drops, report.per_group))
    assert results[0][1].num_rows > 0
    for kept_rows, drops, per_group in results[1:]:
        assert kept_rows.equals(results[0][0]) and drops.equals(results[0][1]) and per_group == results[0][2]


def test_held_survivors_write_the_same_rows(tmp_path, magpie_100k, monkeypatch):
    """With a length ratio and only --out, the first pass holds the rows that pass the row rules (read once):
    as read (views) while they fit, copied compactly past that; past the limit even so, or at 0, it reads the
    input again. The output is the same."""
    import skyfilter.select as select_module

    path = tmp_path / "magpie.parquet"
    pq.write_table(magpie_100k.slice(0, 30_000), path, row_group_size=7_000)
    options = SelectOptions(chosen_score="score_chosen", rejected_score="score_rejected", max_length_ratio=2.0,
                            **RECIPE)  # fmt: skip
    as_read = sum(b.get_total_buffer_size() for b in open_source(str(path)).batches(4096, views=True))
    passes, held = [], []
    real, survivors = select_module.iter_batches, select_module._Survivors
    monkeypatch.setattr(select_module, "iter_batches", lambda *a, **k: passes.append(a[2]) or real(*a, **k))
    monkeypatch.setattr(select_module, "_Survivors", lambda *a: held.append(survivors(*a)) or held[-1])
    outputs = {}
    for hold in (1 << 40, 0, 200_000, as_read * 3 // 4):  # all held as read, never, let go part-way, copied
        passes.clear()
        out = tmp_path / f"kept-{hold}.parquet"
        run_select([str(path)], options, out=str(out), hold_bytes=hold, batch_rows=4096, progress=False)
        outputs[hold] = (pq.read_table(out), list(passes))
    assert outputs[1 << 40][1] == ["scoring"] and outputs[0][1] == outputs[200_000][1] == ["scoring", "writing"]
    assert outputs[as_read * 3 // 4][1] == ["scoring"]
    assert [(s.copying, s.held is None) for s in held] == [(False, False), (True, True), (True, False)]
    kept = outputs[0][0]
    assert 0 < kept.num_rows < 30_000 and kept.schema == magpie_100k.schema
    assert all(output.equals(kept) for output, _ in outputs.values())


def test_string_view_columns_of_a_parquet_file_keep_their_type(tmp_path, magpie_100k):
    """String columns typed string_view in the file (pyarrow has no filter or take for them) are written back
    as string_view, with the rows of the same file typed string."""
    table = magpie_100k.slice(0, 5_000)
    views = pa.schema([f.with_type(pa.string_view()) if f.type == pa.string() else f for f in table.schema])
    pq.write_table(table, tmp_path / "plain.parquet", row_group_size=1_500)
    pq.write_table(table.cast(views), tmp_path / "views.parquet", row_group_size=1_500)
    options = SelectOptions(chosen_score="score_chosen", rejected_score="score_rejected", **RECIPE)
    written = {}
    for name in ("plain", "views"):
        out, dropped = tmp_path / f"k-{name}.parquet", tmp_path / f"d-{name}.parquet"
        run_select([str(tmp_path / f"{name}.parquet")], options, out=str(out), dropped=str(dropped), progress=False)
        written[name] = (pq.read_table(out), pq.read_table(dropped))
    (kept, dropped), (kept_views, dropped_views) = written["plain"], written["views"]
    assert 0 < kept.num_rows < 5_000 and kept.num_rows + dropped.num_rows == 5_000
    assert kept_views.schema.field("prompt").type == pa.string_view()
    assert kept_views.cast(kept.schema).equals(kept)
    other = [c for c in dropped.column_names if c != "input_file"]  # the file names differ
    assert dropped_views.cast(dropped.schema).select(other).equals(dropped.select(other))


# ------------------------------------------------------------------------------------------ command line


def invoke(*args):
    return run_cli("select", *args)


def write(path, **columns):
    n = len(next(iter(columns.values())))
    table = pa.table({"prompt": ["q"] * n, "chosen": ["a"] * n, "rejected": ["b"] * n} | columns)
    pq.write_table(table, path)
    return path


def test_command_writes_every_row_once(tmp_path, shared_data):
    source = shared_data / "prefs/ultrafeedback_binarized_1200/train_clean.jsonl"
    code, text = invoke(source, "--chosen-score", "metadata.score_chosen", "--rejected-score",
                        "metadata.score_rejected", "--min-margin", 1, "--score", "metadata.score_chosen",
                        "--top-default", 0.5, "--out", tmp_path / "k.parquet", "--dropped", tmp_path / "d.jsonl",
                        "--report", tmp_path / "r.json")  # fmt: skip
    assert code == 0, text
    assert "top fraction by metadata.score_chosen" in text and "wrote out ->" in text
    kept, dropped = pq.read_table(tmp_path / "k.parquet"), read_table(tmp_path / "d.jsonl")
    report = json.loads((tmp_path / "r.json").read_text())
    assert kept.num_rows + dropped.num_rows == report["rows"] == 1000
    assert kept.schema.names == read_table(source).schema.names
    assert dropped.schema.names[-len(ADDED_COLUMNS) :] == list(ADDED_COLUMNS)
    assert set(dropped["reason"].to_pylist()) == {"margin", "top_fraction"}
    assert report["dropped"]["margin"] + report["dropped"]["top_fraction"] == dropped.num_rows
    assert set(report["dropped"]) == set(REASONS[1:])
    ranked = report["per_group"]["(all)"]["ranked_rows"]
    assert report["kept"] == math.ceil(0.5 * ranked)


def assert_fails_cleanly(tmp_path, args, *fragments):
    outputs = {"--out": "k.parquet", "--dropped": "d.parquet", "--report": "r.json"}
    shared_assert_fails_cleanly(tmp_path, ["select", *args], outputs, *fragments)


def test_missing_score_column(tmp_path):
    src = write(tmp_path / "p.parquet", s=[1.0, 2.0])
    assert_fails_cleanly(tmp_path, [src, "--score", "nope", "--top-default", 0.5], "p.parquet", "no column 'nope'")
    assert_fails_cleanly(tmp_path, [src, "--score", "s.x", "--top-default", 0.5], "no column 's.x'")


def test_non_numeric_score_column(tmp_path):
    src = write(tmp_path / "p.parquet", s=["1", "2"])
    assert_fails_cleanly(tmp_path, [src, "--score", "s", "--top-default", 0.5], "p.parquet", "'s' must hold numbers")


def test_null_and_nan_scores(tmp_path):
    src = write(tmp_path / "p.parquet", c=[1.0, 2.0, 3.0], r=[0.0, float("nan"), None])
    args = [src, "--chosen-score", "c", "--rejected-score", "r", "--min-margin", 0]
    assert_fails_cleanly(tmp_path, args, "p.parquet: row 1 (0-based): column 'r' is null or NaN", "--missing drop")
    code, text = invoke(*args, "--missing", "drop", "--dropped", tmp_path / "d.parquet")
    assert code == 0, text
    assert pq.read_table(tmp_path / "d.parquet")["reason"].to_pylist() == ["missing_score", "missing_score"]


def test_unknown_offset_group(tmp_path):
    src = write(tmp_path / "p.parquet", s=[1.0, 2.0, 3.0], gen=["air", "pro", "ultra"])
    args = [src, "--score", "s", "--top-default", 0.5, "--offset-by", "gen", "--offset", "air=-0.1"]
    assert_fails_cleanly(tmp_path, [*args, "--offset", "pro=-0.05"], "row 2 (0-based): column 'gen' has value 'ultra'")


def test_fraction_for_a_group_that_never_occurs(tmp_path):
    src = write(tmp_path / "p.parquet", s=[1.0, 2.0], cat=["Math", "Coding & Debugging"])
    args = [src, "--score", "s", "--group-by", "cat", "--top", "Coding & debugging=0.3"]
    assert_fails_cleanly(tmp_path, args, "['Coding & debugging']", "never occur in column 'cat'")


def test_option_mistakes(tmp_path):
    src = write(tmp_path / "p.parquet", s=[1.0, 2.0])
    code, text = invoke(src, "--top", "Math=lots", "--out", tmp_path / "k.parquet")
    assert code == 2 and "Invalid value for '--top': expected NAME=NUMBER, got 'Math=lots'" in text
    code, text = invoke(src, "--offset", "a=1", "--offset", "a=2", "--out", tmp_path / "k.parquet")
    assert code == 2 and "'a' is given twice" in text and not (tmp_path / "k.parquet").exists()
    assert_fails_cleanly(tmp_path, [src, "--top-default", 0.3], "needs a --score column to rank by")
    assert_fails_cleanly(tmp_path, [src, "--min-margin", 1], "--min-margin: needs the --chosen-score column")
    assert_fails_cleanly(tmp_path, [src, "--score", "s", "--top", "x=1.5"], "within [0, 1]")
    assert_fails_cleanly(
        tmp_path,
        [src, "--score", "s", "--top-default", 0.1, "--offset", "a=1"],
        "--offset: needs the --offset-by column",
    )
    code, text = invoke(src, "--score", "s", "--top-default", 0.1, "--out", tmp_path / "x.csv")
    assert code == 1 and "unknown output format '.csv'" in text and not (tmp_path / "x.csv").exists()


def test_a_score_column_no_rule_reads_is_refused(tmp_path, shared_data):
    """A score column named without the rule that reads it (a bound left out, or a typo'd column) kept every row
    without a word: now it is one line naming the rules that read it."""
    uf = shared_data / "prefs/ultrafeedback_binarized_1200/eval_clean.jsonl"
    scores = ["--chosen-score", "metadata.score_chosenn", "--rejected-score", "metadata.score_rejected"]
    assert_fails_cleanly(tmp_path, [uf, *scores], "--chosen-score metadata.score_chosenn is read by no rule given",
                         "--min-chosen, --max-chosen, --min-margin, --max-margin")  # fmt: skip
    assert_fails_cleanly(tmp_path, [uf, *scores, "--min-chosen", 5], "--rejected-score metadata.score_rejected")
    assert_fails_cleanly(tmp_path, [uf, "--score", "metadata.score_chosen"], "add one of --top, --top-default")
    code, text = invoke(uf, *scores, "--min-margin", 1, "--out", tmp_path / "k.parquet", "-q")
    assert code == 1 and "no column 'metadata.score_chosenn'" in text  # read by a rule: the column is checked


def test_a_length_ratio_on_prompts_alone_is_refused(tmp_path, shared_data):
    """An audit file with its answers in chosen_response / rejected_response is read as prompts alone: every ratio
    was 1, so --max-length-ratio 1.5 kept all 1,000 rows (263 are over 1.5) and 0.5 dropped them all, without a
    word. The rule now refuses a file without answers, naming the columns that look like them."""
    audit = shared_data / "prefs/hh_harmless_audit_labels/df_labeledharmlessoutputs_second_pass.csv"
    assert_fails_cleanly(tmp_path, [audit, "--max-length-ratio", 1.5], "df_labeledharmlessoutputs_second_pass.csv: "
                         "the length-ratio rule compares the answers, but without chosen and rejected columns the rows "
                         "are read as prompts alone; columns ['chosen_response', 'rejected_response'] look like "
                         "answers")  # fmt: skip
    with pytest.raises(InputError, match="read as prompts alone$"):  # no answer-like column: the same, said plainly
        select_table(pa.table({"prompt": ["a", "b"]}), SelectOptions(min_length_ratio=0.5))


def test_empty_input_gives_empty_outputs(tmp_path):
    src = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"prompt": pa.array([], pa.string()), "s": pa.array([], pa.float64()),
                             "cat": pa.array([], pa.string())}), src)  # fmt: skip
    outputs = ["--out", tmp_path / "k.parquet", "--dropped", tmp_path / "d.parquet", "--report", tmp_path / "r.json"]
    code, text = invoke(src, "--score", "s", "--group-by", "cat", "--top", "Math=0.3", "--top-default", 0.1, *outputs,
                        "--allow-empty")  # fmt: skip
    assert code == 0, text
    assert pq.read_table(tmp_path / "k.parquet").num_rows == 0 == pq.read_table(tmp_path / "d.parquet").num_rows
    assert json.loads((tmp_path / "r.json").read_text())["rows"] == 0


def test_length_ratio_reads_answer_turns_in_every_layout(tmp_path):
    plain = pa.table(
        {
            "prompt": ["q1", "q2", "q3", "q4"],
            "chosen": ["short", "a much longer answer", "", "héllo"],
            "rejected": ["a much longer answer", "short", "x", "abcd"],
        }
    )
    message = lambda role, text: [{"role": role, "content": text}]  # noqa: E731
    conversational = pa.table(
        {
            column: [message("user", p) + message("assistant", a) for p, a in zip(plain["prompt"].to_pylist(),
                                                                              plain[column].to_pylist(), strict=True)]
            for column in ("chosen", "rejected")
        }
    )  # fmt: skip
    conversational = conversational.append_column("id", pa.array(["a", "b", "c", "d"]))
    options = SelectOptions(min_length_ratio=0.5, max_length_ratio=2.0)
    expected = ["length_ratio", "length_ratio", "length_ratio", "kept"]
    assert reasons_of(plain, options) == reasons_of(conversational, options) == expected
    # From parquet with only an output, the rules' pass reads every column (strings as views) and holds the rows.
    for name, table in (("plain", plain), ("conversational", conversational)):
        pq.write_table(table, tmp_path / f"{name}.parquet")
        out = tmp_path / f"kept-{name}.parquet"
        run_select([str(tmp_path / f"{name}.parquet")], options, out=str(out), progress=False)
        assert pq.read_table(out).equals(table.slice(3, 1)), name


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(st.one_of(st.none(), st.text(max_size=30)), min_size=1, max_size=40),
    chunk=st.integers(1, 17),
    offset=st.integers(0, 3),
    picks=st.lists(st.integers(0, 10_000), max_size=50),
    kind=st.sampled_from([pa.string(), pa.large_string(), pa.string_view()]),
)
def test_take_rows_as_views_equals_pyarrow_take(texts, chunk, offset, picks, kind):
    """take_rows gives pyarrow's rows whatever the chunking, the chunks' offsets and the string type; with
    views=True the strings come back as string_view columns over the same text."""
    from skyfilter.io import take_rows

    values = pa.array(["pad"] * offset + texts, type=pa.string()).slice(offset)  # chunks that start at an offset
    chunks = [values.slice(i, chunk).cast(kind) for i in range(0, len(texts), chunk)]
    table = pa.table({"text": pa.chunked_array(chunks, type=kind), "n": pa.array(range(len(texts)))})
    rows = np.array(sorted(p % len(texts) for p in picks), dtype=np.int64)
    expected = pa.table({"text": pa.array([texts[r] for r in rows], type=pa.string()), "n": pa.array(rows)})
    for views in (False, True):
        taken = take_rows(table, rows, views=views)
        view_type = views or kind == pa.string_view()
        assert taken.schema.field("text").type == (pa.string_view() if view_type else kind)
        assert taken.cast(expected.schema).equals(expected)


def test_kept_as_views_shares_the_input_text(magpie_100k):
    options = SelectOptions(chosen_score="score_chosen", rejected_score="score_rejected", **RECIPE)
    selection = select_table(magpie_100k, options)
    copied, shared = selection.kept(), selection.kept(views=True)
    assert shared.schema.field("chosen").type == pa.string_view()
    assert shared.cast(copied.schema).equals(copied) and copied.num_rows == int(selection.mask.sum())
    assert pl.from_arrow(shared).equals(pl.from_arrow(copied))
    from skyfilter.io import take_rows

    for bad in ([3, 1], [0, magpie_100k.num_rows], [-1]):
        with pytest.raises(ValueError, match="ascending row numbers"):
            take_rows(magpie_100k, np.array(bad), views=True)
    # a string_view input (as polars hands out) can be selected and its dropped rows written
    views_in = select_table(pl.from_arrow(magpie_100k).to_arrow(compat_level=pl.CompatLevel.newest()), options)
    assert views_in.kept().cast(copied.schema).equals(copied)
    assert views_in.dropped().num_rows == magpie_100k.num_rows - copied.num_rows


def test_an_input_with_the_added_columns_is_refused_only_when_dropped_rows_are_written(tmp_path):
    # skyrm score's output has `input_row`; select adds it to the dropped rows only
    path = tmp_path / "scores.parquet"
    table = pa.table({"input_row": [0, 1, 2], "rm_chosen": [1.0, 0.0, 2.0], "rm_rejected": [0.5, 1.0, 1.0]})
    pq.write_table(table, path)
    options = SelectOptions(rm_chosen="rm_chosen", rm_rejected="rm_rejected")
    run_select([str(path)], options, out=str(tmp_path / "kept.parquet"), progress=False)
    assert pq.read_table(tmp_path / "kept.parquet")["input_row"].to_pylist() == [0, 2]
    with pytest.raises(InputError, match=r"already has column\(s\) \['input_row'\], which the output adds"):
        run_select([str(path)], options, out=str(tmp_path / "k2.parquet"), dropped=str(tmp_path / "d.parquet"))


def test_option_values_that_are_not_numbers_are_refused():
    """A NaN bound (it would drop every row: NaN compares false), a bool (Python's int) or a string is refused,
    naming the field (on the command line, its flag: test_option_mistakes)."""
    scores = {"chosen_score": "c", "rejected_score": "r"}
    for value, shown in ((float("nan"), "NaN"), (True, "True"), ("1", "'1'")):
        with pytest.raises(ValueError, match=f"^min_margin must be a number, got {shown}$"):
            SelectOptions(**scores, min_margin=value)
    with pytest.raises(ValueError, match=r"^fractions\['Math'\] must be a number, got None$"):
        SelectOptions(score="s", group_by="g", fractions={"Math": None})
    with pytest.raises(ValueError, match="^min_margin, max_margin: needs the rejected_score column$"):
        SelectOptions(chosen_score="c", min_margin=1, max_margin=2)
    with pytest.raises(ValueError, match="^min_length_ratio 2 is above max_length_ratio 1$"):
        SelectOptions(min_length_ratio=2, max_length_ratio=1)
