"""skyfilter curate: the offline sample run end to end (files, counts that add up, the released schema), the Magpie
selection against an independent polars implementation of the rule, the WildGuardMix readings, and failures that
leave nothing behind."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from skyfilter.curate import DATA_FILE, RELEASE_SCHEMA, CurateError, run_curate
from skyfilter.io import demo_file, read_table
from skyfilter.recipe import load_recipe, parse_recipe
from skyfilter.samples import sample_table

from tests.skyfilter.cli_helpers import listing, run_cli


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("curate") / "sample80k"
    code, text = run_cli("curate", "--recipe", "skywork-80k-v0.2", "--sample", "--out", out)
    assert code == 0, text
    return out, text


def test_sample_run_writes_data_manifest_report_and_plots(sample_run):
    out, text = sample_run
    assert listing(out) == ["data", "dropped.parquet", "magpie_scores.png", "manifest.json", "pairs_per_step.png",
                            "report.md"]  # fmt: skip
    assert "HelpSteer2: " in text and "decontaminate" in text and "wrote" in text
    for png in ("magpie_scores.png", "pairs_per_step.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    report = (out / "report.md").read_text()
    for fragment in ("## The curated set (the paper's Table 1)", "| Magpie-Ultra |", "## Magpie category mix",
                     "| Math |", "decontaminate", "contaminated"):  # fmt: skip
        assert fragment in report, fragment
    data = pq.read_table(out / DATA_FILE)
    assert data.schema == RELEASE_SCHEMA and data.num_rows > 300
    first = data.slice(0, 1).to_pylist()[0]
    assert first["chosen"][-1]["role"] == "assistant" and first["chosen"][:-1] == first["rejected"][:-1]
    assert first["chosen"][0]["role"] == "user"


def test_the_output_loads_with_datasets(sample_run):
    datasets = pytest.importorskip("datasets")
    out, _ = sample_run
    loaded = datasets.load_dataset(str(out))
    assert list(loaded) == ["train"] and loaded["train"].column_names == ["chosen", "rejected", "source"]
    assert loaded["train"].num_rows == pq.read_metadata(out / DATA_FILE).num_rows


def test_manifest_counts_add_up(sample_run):
    out, _ = sample_run
    manifest = json.loads((out / "manifest.json").read_text())
    recipe = load_recipe("skywork-80k-v0.2")
    names = [s.name for s in recipe.sources]
    assert [s["step"] for s in manifest["steps"]] == ["convert", "dedup", "select", "decontaminate"]
    assert manifest["recipe"]["name"] == "skywork-80k-v0.2" and manifest["recipe"]["text"] == recipe.text
    assert manifest["tool"]["name"] == "skyfilter" and manifest["sample"] is True
    assert [i["source"] for i in manifest["inputs"]] == names and all(
        len(i["sha256"]) == 64 for i in manifest["inputs"]
    )
    dropped = pq.read_table(out / "dropped.parquet")
    counted = {}
    for step, source, reason in zip(
        *(dropped.column(c).to_pylist() for c in ("step", "source", "reason")), strict=True
    ):
        counted[(step, source, reason)] = counted.get((step, source, reason), 0) + 1
    previous = None
    for step in manifest["steps"]:
        assert set(step["sources"]) == set(names)
        for name, entry in step["sources"].items():
            assert entry["in"] == entry["out"] + sum(entry["dropped"].values()), (step["step"], name)
            for reason, n in entry["dropped"].items():
                assert counted.pop((step["step"], name, reason)) == n
            if previous is not None:  # pairs out of one step are the pairs into the next
                before = previous["sources"][name]
                assert entry["in"] == before.get("pairs", before["out"])
        assert step["rows_in"] == sum(e["in"] for e in step["sources"].values())
        assert step["rows_out"] == sum(e["out"] for e in step["sources"].values())
        previous = step
    assert counted == {}  # every dropped row is in the manifest, and nothing else is
    inputs = {i["source"]: i["rows"] for i in manifest["inputs"]}
    assert {n: e["in"] for n, e in manifest["steps"][0]["sources"].items()} == inputs
    assert manifest["outputs"]["data"]["rows"] == manifest["steps"][-1]["rows_out"]
    reasons = {r for (_, _, r) in [(s["step"], n, r) for s in manifest["steps"] for n, e in s["sources"].items()
                                   for r in e["dropped"]]}  # fmt: skip
    # the planted bad rows of every layout are dropped with their reasons, never silently
    assert {"missing_rating", "empty_response", "one_response", "unknown_category", "missing_score", "no_response",
            "bad_label", "exact_duplicate", "top_fraction", "not_adversarial", "contaminated"} <= reasons  # fmt: skip


def test_contaminated_prompts_are_the_planted_benchmark_copies(sample_run):
    out, _ = sample_run
    dropped = pq.read_table(out / "dropped.parquet").to_pylist()
    flagged = [r for r in dropped if r["reason"] == "contaminated"]
    assert flagged and all(r["source"] == "Magpie-Ultra" for r in flagged)
    assert all(r["prompt"][0]["content"].startswith("Please answer this.") for r in flagged)
    assert all("demo_bench" in r["detail"] for r in flagged)
    convert_drops = [r for r in dropped if r["step"] == "convert"]
    assert all(json.loads(r["record"]) for r in convert_drops)  # the input row itself, as JSON


# ------------------------------------------------------------------------------------ Magpie rule


GENERATORS = {"Magpie-Ultra": 0.0, "Magpie-Pro-3.1": 0.0, "Magpie-Pro": -0.05, "Magpie-Air": -0.1}
FRACTIONS = {"Math": 0.3, "Coding & Debugging": 0.3}


def magpie_recipe(folder) -> str:
    sources = "".join(
        f'[[sources]]\nname = "{g}"\nadapter = "{"magpie-ultra" if g == "Magpie-Ultra" else "magpie-dpo"}"\n'
        f'dataset = "{folder}/{g}.parquet"\n\n'
        for g in GENERATORS
    )
    offsets = "".join(f'"{g}" = {d}\n' for g, d in GENERATORS.items())
    return (f'name = "magpie-only"\n\n{sources}[select.magpie]\nsources = {list(GENERATORS)}\n'
            f'default_fraction = 0.1\n\n[select.magpie.offsets]\n{offsets}\n[select.magpie.fractions]\n'
            '"Math" = 0.3\n"Coding & Debugging" = 0.3\n').replace("'", '"')  # fmt: skip


def polars_magpie(folder) -> list[tuple[str, int]]:
    """The Magpie rule written independently in polars from the raw layouts: mean ArmoRM score plus offset, ranked
    within each category over the four sets pooled in recipe order (ties to the earlier row), best
    ceil(f x n) kept."""
    frames = []
    for g in GENERATORS:
        raw = pl.read_parquet(folder / f"{g}.parquet")
        if g == "Magpie-Ultra":
            frame = raw.select(category=pl.col("primary_tag"), score=(pl.col("score") + pl.col("score_base")) / 2)
        else:
            scores = pl.col("rewards_armorm").list.eval(pl.element().struct.field("score"))
            frame = raw.select(category=pl.col("task_category"), score=scores.list.mean())
        frames.append(frame.with_row_index("source_row").with_columns(source=pl.lit(g), offset=pl.lit(GENERATORS[g])))
    pool = pl.concat(frames).with_row_index("pool_row")
    adjusted = pl.col("score") + pl.col("offset")
    fraction = pl.col("category").replace_strict(FRACTIONS, default=0.1, return_dtype=pl.Float64)
    rank = pl.struct(-adjusted, pl.col("pool_row")).rank("ordinal").over("category")
    quota = (fraction * pl.len().over("category") * (1 - 1e-12)).ceil()
    kept = pool.filter(rank <= quota).sort("pool_row")
    return list(zip(kept["source"].to_list(), kept["source_row"].to_list(), strict=True))


def test_magpie_selection_equals_a_polars_implementation(tmp_path):
    folder = tmp_path / "mirror"
    folder.mkdir()
    for g in GENERATORS:  # a pool of the four layouts: categories, generators, bf16-like scores with many ties
        adapter = "magpie-ultra" if g == "Magpie-Ultra" else "magpie-dpo"
        table = sample_table(adapter, g, 1500, generator=g, bad=False)
        if g == "Magpie-Ultra":  # round like the others, so that ties cross the sets
            for c in ("score", "score_base"):
                rounded = np.round(table.column(c).to_numpy() * 256) / 256
                table = table.set_column(table.schema.get_field_index(c), c, pa.array(rounded + (c == "score") / 512))
        pq.write_table(table, folder / f"{g}.parquet")
    recipe = parse_recipe(magpie_recipe(folder), "magpie-only.toml")
    manifest = run_curate(recipe, tmp_path / "out", plots=False, log=lambda _: None)
    dropped = pq.read_table(tmp_path / "out" / "dropped.parquet")
    gone = set(zip(dropped.column("source").to_pylist(), dropped.column("source_row").to_pylist(), strict=True))
    ours = [(g, r) for g in GENERATORS for r in range(1500) if (g, r) not in gone]
    expected = polars_magpie(folder)
    assert ours == expected
    assert 0.1 * 6000 < len(expected) < 0.3 * 6000
    select = manifest.step("select")
    assert select["rows_out"] == len(expected) == manifest.outputs["data"]["rows"]
    ties = pl.read_parquet(folder / "Magpie-Pro.parquet")["rewards_armorm"].list.eval(
        pl.element().struct.field("score")).list.mean().is_duplicated().sum()  # fmt: skip
    assert ties > 100
    # the output rows are the kept pairs, in pool order
    data = pq.read_table(tmp_path / "out" / DATA_FILE)
    assert data.column("source").to_pylist() == [g for g, _ in expected]


# ------------------------------------------------------------------------------------ WildGuardMix readings


def wildguard_recipe(folder, reading: str, scores: str | None = None) -> str:
    text = (f'name = "wg"\n\n[[sources]]\nname = "WildGuardMix"\nadapter = "wildguardmix"\n'
            f'dataset = "{folder}/WildGuardMix.parquet"\n\n[select.wildguardmix]\nsources = ["WildGuardMix"]\n'
            f'reading = "{reading}"\n')  # fmt: skip
    return text + (f'scores = "{scores}"\n' if scores else "")


@pytest.mark.parametrize("reading", ["adversarial", "rm-agreement", "both"])
def test_wildguard_readings(tmp_path, reading):
    folder = tmp_path / "mirror"
    folder.mkdir()
    table = sample_table("wildguardmix", "WildGuardMix", 400)
    pq.write_table(table, folder / "WildGuardMix.parquet")
    from skyfilter.adapters import wildguardmix

    pairs = wildguardmix.convert(table, "WildGuardMix").pairs
    rng = np.random.default_rng(1)
    n = pairs.num_rows
    scores = pa.table({"source": ["WildGuardMix"] * n, "source_row": pairs.column("source_row"),
                       "rm_chosen": rng.normal(size=n), "rm_rejected": rng.normal(size=n)})  # fmt: skip
    pq.write_table(scores, tmp_path / "scores.parquet")
    recipe = parse_recipe(wildguard_recipe(folder, reading, str(tmp_path / "scores.parquet")), "wg.toml")
    run_curate(recipe, tmp_path / "out", plots=False, log=lambda _: None)
    adversarial = np.array(pairs.column("adversarial").to_pylist())
    agree = scores.column("rm_chosen").to_numpy() > scores.column("rm_rejected").to_numpy()
    keep = {"adversarial": adversarial, "rm-agreement": agree, "both": adversarial & agree}[reading]
    data = pq.read_table(tmp_path / "out" / DATA_FILE)
    chosen = [c[-1]["content"] for c in data.column("chosen").to_pylist()]
    assert chosen == [c[0]["content"] for c, k in zip(pairs.column("chosen").to_pylist(), keep, strict=True) if k]
    assert 0 < sum(keep) < pairs.num_rows


def test_rm_agreement_needs_a_score_for_every_pair(tmp_path):
    folder = tmp_path / "mirror"
    folder.mkdir()
    pq.write_table(sample_table("wildguardmix", "WildGuardMix", 100), folder / "WildGuardMix.parquet")
    pq.write_table(pa.table({"source": ["WildGuardMix"], "source_row": [0], "rm_chosen": [1.0], "rm_rejected": [0.0]}),
                   tmp_path / "scores.parquet")  # fmt: skip
    recipe = parse_recipe(wildguard_recipe(folder, "rm-agreement", str(tmp_path / "scores.parquet")), "wg.toml")
    with pytest.raises(CurateError, match="no reward-model scores for WildGuardMix row"):
        run_curate(recipe, tmp_path / "out", plots=False, log=lambda _: None)
    assert listing(tmp_path) == ["mirror", "scores.parquet"]


# ------------------------------------------------------------------------------------ failures


def test_an_existing_output_folder_is_not_touched(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    code, text = run_cli("curate", "--recipe", "skywork-80k-v0.2", "--sample", "--out", tmp_path / "out")
    assert code != 0 and "already exists" in text and "Traceback" not in text
    assert listing(tmp_path / "out") == ["keep.txt"]


def test_a_source_missing_from_the_data_folder_fails_cleanly(tmp_path):
    """With --data-dir, a source that is not there is an error (never a silent download), before any work."""
    (tmp_path / "mirror").mkdir()
    bench = demo_file("demo_bench.jsonl")
    code, text = run_cli("curate", "--recipe", "skywork-80k-v0.2", "--out", tmp_path / "out",
                         "--data-dir", tmp_path / "mirror", "--bench-file", bench)  # fmt: skip
    assert code != 0 and "Traceback" not in text
    assert "source HelpSteer2: not in" in text and "HelpSteer2.parquet" in text and "not a local file" in text
    assert listing(tmp_path) == ["mirror"]


def test_a_wrong_benchmark_fails_before_any_work(tmp_path):
    code, text = run_cli("curate", "--recipe", "skywork-80k-v0.2", "--sample", "--out", tmp_path / "out",
                         "--bench-file", tmp_path / "missing.jsonl")  # fmt: skip
    assert code != 0 and "decontaminate:" in text and "missing.jsonl" in text and "HelpSteer2" not in text
    assert listing(tmp_path) == []


def test_a_benchmark_for_a_recipe_without_decontamination_is_refused(tmp_path):
    """--bench-file with a recipe that has no [decontaminate] step ran without a word and matched nothing."""
    (tmp_path / "wg.toml").write_text(wildguard_recipe(tmp_path, "adversarial"), encoding="utf-8")
    code, text = run_cli("curate", "--recipe", tmp_path / "wg.toml", "--out", tmp_path / "out", "--bench-file",
                         tmp_path / "nope.jsonl")  # fmt: skip
    assert code != 0 and "--bench-file: recipe 'wg' has no [decontaminate] step" in text and "Traceback" not in text
    assert listing(tmp_path) == ["wg.toml"]


def test_a_recipe_curates_your_own_pairs(tmp_path, shared_data):
    """`adapter = "pairs"`: a user's own pairs (here real UltraFeedback rows) in a recipe, deduplicated and selected
    by their own scores; every input row is accounted for."""
    uf = shared_data / "prefs/ultrafeedback_binarized_1200/train_clean.jsonl"
    recipe = (f'name = "mine"\n\n[[sources]]\nname = "UF"\nadapter = "pairs"\ndataset = "{uf}"\n\n'
              '[dedup]\nkey = "pair"\n')  # fmt: skip
    (tmp_path / "mine.toml").write_text(recipe, encoding="utf-8")
    code, text = run_cli("curate", "--recipe", tmp_path / "mine.toml", "--out", tmp_path / "out", "-q", "--no-plots")
    assert code == 0, text
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    convert = manifest["steps"][0]["sources"]["UF"]
    assert convert["in"] == 1000 and convert["dropped"] == {"empty_response": 2, "identical_responses": 4}
    assert convert["in"] == convert["out"] + sum(convert["dropped"].values())


def test_decontamination_can_match_prompts_too_short_for_an_ngram(tmp_path, shared_data):
    """`match_short = true`: AlpacaEval's 805 instructions (RewardBench's alpacaeval prompts) as a user's pairs are
    all dropped, the 77 too short for a 7-gram too, each with the copied prompt as its detail."""
    alpaca = read_table(shared_data / "prefs/alpacaeval2_gpt4turbo_annotations/baseline_outputs.jsonl")
    pairs = pa.table({"prompt": alpaca.column("instruction"), "chosen": alpaca.column("output"),
                      "rejected": pa.array([f"answer {i}" for i in range(alpaca.num_rows)])})  # fmt: skip
    pq.write_table(pairs, tmp_path / "alpaca.parquet")
    bench = shared_data / "bench/rewardbench_sources/rewardbench_prompt_sources_all.jsonl"
    source = f'[[sources]]\nname = "A"\nadapter = "pairs"\ndataset = "{tmp_path / "alpaca.parquet"}"\n'
    recipe = f'name = "alpaca"\n\n{source}\n[decontaminate]\nbench = ["{bench}"]\nmatch_short = true\n'
    (tmp_path / "a.toml").write_text(recipe, encoding="utf-8")
    code, text = run_cli("curate", "--recipe", tmp_path / "a.toml", "--out", tmp_path / "out", "-q", "--no-plots")
    assert code == 0, text
    step = json.loads((tmp_path / "out" / "manifest.json").read_text())["steps"][-1]
    assert step["match_short"] and step["sources"]["A"]["dropped"] == {"contaminated": 805}
    dropped = pq.read_table(tmp_path / "out" / "dropped.parquet").column("detail").to_pylist()
    assert any(d.endswith("'who is larry page'") for d in dropped)


def test_a_source_in_the_wrong_layout_names_it(tmp_path):
    folder = tmp_path / "mirror"
    folder.mkdir()
    pq.write_table(pa.table({"prompt": ["q"], "chosen": ["a"], "rejected": ["b"]}), folder / "WildGuardMix.parquet")
    recipe = parse_recipe(wildguard_recipe(folder, "adversarial"), "wg.toml")
    with pytest.raises(CurateError, match=r"source WildGuardMix .*needs column\(s\) \['adversarial'"):
        run_curate(recipe, tmp_path / "out", plots=False, log=lambda _: None)
    assert not (tmp_path / "out").exists()


def test_pairs_output_keeps_what_scoring_needs(tmp_path):
    """format = "pairs": the curation table (prompt apart, source_row, scores) instead of the released schema."""
    from skyfilter.adapters import CURATION_SCHEMA

    folder = tmp_path / "mirror"
    folder.mkdir()
    pq.write_table(sample_table("wildguardmix", "WildGuardMix", 100), folder / "WildGuardMix.parquet")
    text = wildguard_recipe(folder, "adversarial") + '\n[output]\nformat = "pairs"\n'
    run_curate(parse_recipe(text, "wg.toml"), tmp_path / "out", plots=False, log=lambda _: None)
    data = pq.read_table(tmp_path / "out" / DATA_FILE)
    assert data.schema == CURATION_SCHEMA and data.num_rows > 0
    assert all(data.column("adversarial").to_pylist()) and data.column("source_row").null_count == 0


def test_sources_load_through_datasets(tmp_path):
    """A dataset id that is not a file goes through datasets.load_dataset (the hub code path), here on a local
    dataset folder laid out as on the hub."""
    pytest.importorskip("datasets")
    repo = tmp_path / "wildguardmix-local"
    (repo / "data").mkdir(parents=True)
    table = sample_table("wildguardmix", "WildGuardMix", 120)
    pq.write_table(table, repo / "data" / "train-00000-of-00001.parquet")
    text = wildguard_recipe(tmp_path, "adversarial").replace(f'"{tmp_path}/WildGuardMix.parquet"', f'"{repo}"')
    manifest = run_curate(parse_recipe(text, "wg.toml"), tmp_path / "out", plots=False, log=lambda _: None)
    (source,) = manifest.inputs
    assert source["origin"] == "datasets.load_dataset" and source["rows"] == 120 and source["fingerprint"]
    assert manifest.step("convert")["sources"]["WildGuardMix"]["in"] == 120
