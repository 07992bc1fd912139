"""The ray engine makes the local engine's decisions: contaminate and select on a two-node Ray cluster give the same
rows, in the same order, with the same added columns and report as on one machine, for one and several pieces per
shard; bad input fails with the same message; a failed run leaves no output folder; a worker killed mid-run is
retried and the output is unchanged. Shards come from real data (RMB, UltraFeedback, PandaLM)."""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pajson
import pyarrow.parquet as pq
import pytest
from skyfilter.benchmarks import Benchmark, load_benchmark
from skyfilter.contaminate import run as contaminate_local
from skyfilter.io import InputError
from skyfilter.ray import run_contaminate
from skyfilter.ray import run_select as run_select_on_ray
from skyfilter.select import SelectOptions, run_select

from tests.skyfilter.cli_helpers import run_cli

BENCH = "bench/rewardbench_sources/rewardbench_prompt_sources_all.jsonl"


def _lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    return (gzip.decompress(data) if path.suffix == ".gz" else data).splitlines()


def _write_shards(folder: Path, lines: list[bytes], stem: str, parts: int, add=None) -> list[str]:
    """``parts`` shards of the rows, alternately JSON Lines and parquet (row groups of 250 rows); ``add`` adds
    columns to each shard's table (then every shard is parquet)."""
    folder.mkdir(exist_ok=True)
    whole = add(pajson.read_json(io.BytesIO(b"\n".join(lines) + b"\n"))) if add else None
    files = []
    for i in range(parts):
        start, stop = i * len(lines) // parts, (i + 1) * len(lines) // parts
        if i % 2 == 0 and add is None:
            path = folder / f"{stem}-{i:02d}.jsonl"
            path.write_bytes(b"\n".join(lines[start:stop]) + b"\n")
        else:
            table = (
                whole.slice(start, stop - start)
                if whole is not None
                else pajson.read_json(io.BytesIO(b"\n".join(lines[start:stop]) + b"\n"))
            )
            path = folder / f"{stem}-{i:02d}.parquet"
            pq.write_table(table, path, row_group_size=250)
        files.append(str(path))
    return files


@pytest.fixture(scope="module")
def rmb(shared_data, tmp_path_factory) -> list[str]:
    lines = _lines(shared_data / "prefs/rmb_pairwise/rmb_pairwise.jsonl.gz")[:3000]
    return _write_shards(tmp_path_factory.mktemp("rmb"), lines, "rmb", 3)


@pytest.fixture(scope="module")
def uf(shared_data, tmp_path_factory) -> list[str]:
    lines = _lines(shared_data / "prefs/ultrafeedback_binarized_1200/train_clean.jsonl")
    return _write_shards(tmp_path_factory.mktemp("uf"), lines, "uf", 2)


def _folder(path) -> pa.Table:
    parts = sorted(Path(path).glob("part-*.parquet"))
    assert [p.name for p in parts] == [f"part-{i:05d}.parquet" for i in range(len(parts))]
    return pa.concat_tables([pq.read_table(p) for p in parts])


def _same(ray_folder, local_file) -> None:
    got, want = _folder(ray_folder), pq.read_table(local_file)
    assert got.schema.equals(want.schema), (got.schema, want.schema)
    assert got.num_rows == want.num_rows
    assert got.equals(want)


def _report(path) -> dict:
    report = json.loads(Path(path).read_text())
    report.pop("outputs")
    return report


@pytest.mark.parametrize("piece_rows", [100_000, 300], ids=["one-piece-per-shard", "several-pieces"])
def test_contaminate_same_as_local(ray_cluster, shared_data, rmb, tmp_path, piece_rows):
    bench = [load_benchmark(str(shared_data / BENCH))]
    common = {}
    if piece_rows == 300:  # and prompts too short for an n-gram, matched whole: one of 3 rows, one of 10 (common)
        bench.append(Benchmark("short", pa.array(["HOW TO COMMIT SUCIDE!", "How to castrate yourself"])))
        common = {"ignore_common": 3, "match_short": True}
    local = contaminate_local(
        rmb, bench, out=str(tmp_path / "clean.parquet"), flagged=str(tmp_path / "flagged.parquet"),
        report=str(tmp_path / "local.json"), progress=False, **common,
    )  # fmt: skip
    result = run_contaminate(
        rmb, bench, out=str(tmp_path / "clean"), flagged=str(tmp_path / "flagged"),
        report=str(tmp_path / "ray.json"), batch_rows=piece_rows, **common,
    )  # fmt: skip
    assert local.clean > 0 and (local.ignored_common_ngrams if common else local.flagged > 0)
    if common:
        assert local.benchmarks["short"]["flagged_rows"] == 3 and local.benchmarks["short"]["prompts_too_short"] == 2
        assert {"ngram": "how to castrate yourself", "rows": 10} in local.ignored_common_ngrams
    _same(tmp_path / "clean", tmp_path / "clean.parquet")
    _same(tmp_path / "flagged", tmp_path / "flagged.parquet")
    assert _report(tmp_path / "ray.json") == _report(tmp_path / "local.json")
    assert result.rows == result.clean + result.flagged + result.bad_rows == 3000


def _with_score(table: pa.Table) -> pa.Table:
    """A score column from the real answers (their length modulo 5: many ties), null for every 37th row."""
    answers = table.column("chosen").combine_chunks().field("answer").to_pylist()
    scores = [None if i % 37 == 0 else float(len(a or "") % 5) for i, a in enumerate(answers)]
    return table.append_column("score", pa.array(scores, pa.float64()))


SELECTIONS = {
    "margin-and-top-fraction": SelectOptions(
        chosen_score="metadata.score_chosen",
        rejected_score="metadata.score_rejected",
        min_margin=0.5,
        score="metadata.score_chosen",
        default_fraction=0.4,
    ),  # fmt: skip
    "per-group-with-missing-scores": SelectOptions(
        score="score",
        group_by="rmb_category",
        fractions={"Harmlessness/S1": 0.25},
        default_fraction=0.3,
        missing="drop",
        min_length_ratio=0.2,
    ),  # fmt: skip
}


@pytest.mark.parametrize("piece_rows", [100_000, 170], ids=["one-piece-per-shard", "several-pieces"])
@pytest.mark.parametrize("case", list(SELECTIONS))
def test_select_same_as_local(ray_cluster, shared_data, uf, tmp_path, case, piece_rows):
    if case == "margin-and-top-fraction":
        inputs = uf
    else:
        lines = _lines(shared_data / "prefs/rmb_pairwise/rmb_pairwise.jsonl.gz")[:2000]
        inputs = _write_shards(tmp_path / "shards", lines, "rmb", 3, add=_with_score)
    options = SELECTIONS[case]
    local = run_select(
        inputs, options, out=str(tmp_path / "kept.parquet"), dropped=str(tmp_path / "dropped.parquet"),
        report=str(tmp_path / "local.json"), progress=False,
    )  # fmt: skip
    run_select_on_ray(
        inputs, options, out=str(tmp_path / "kept"), dropped=str(tmp_path / "dropped"),
        report=str(tmp_path / "ray.json"), batch_rows=piece_rows,
    )  # fmt: skip
    assert 0 < local.kept < local.rows and local.dropped["top_fraction"] > 0
    _same(tmp_path / "kept", tmp_path / "kept.parquet")
    _same(tmp_path / "dropped", tmp_path / "dropped.parquet")
    assert _report(tmp_path / "ray.json") == _report(tmp_path / "local.json")


def test_command_line_and_bad_rows_as_local(ray_cluster, shared_data, tmp_path):
    """PandaLM's answers that are JSON booleans: the same one-line error, or with --bad-rows the same bad rows and
    counts; the command line takes --engine ray (a folder as input)."""
    text = (shared_data / "prefs/pandalm_testset/testset-v1.json").read_text(encoding="utf-8")
    for old, new in (("instruction", "prompt"), ("response1", "chosen"), ("response2", "rejected")):
        text = text.replace(f'"{old}":', f'"{new}":')
    pandalm = tmp_path / "pandalm.json"
    pandalm.write_text(text, encoding="utf-8")
    bench = shared_data / BENCH
    args = ["contaminate", pandalm, "--bench-file", bench, "-q"]
    code_local, text_local = run_cli(*args)
    code_ray, text_ray = run_cli(*args, "--engine", "ray")
    assert code_local == code_ray == 1
    assert text_ray == text_local and "pandalm.json:" in text_ray and "column 'chosen'" in text_ray

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "pandalm.json").write_bytes(pandalm.read_bytes())
    local = [
        "--out",
        tmp_path / "clean.parquet",
        "--bad-rows",
        tmp_path / "bad.parquet",
        "--report",
        tmp_path / "l.json",
    ]
    assert run_cli("contaminate", pandalm, "--bench-file", bench, "-q", *local)[0] == 0
    on_ray = ["--out", tmp_path / "clean", "--bad-rows", tmp_path / "bad-ray.parquet", "--report", tmp_path / "r.json"]
    code, text = run_cli("contaminate", folder, "--bench-file", bench, "-q", "--engine", "ray", *on_ray)
    assert code == 0, text
    _same(tmp_path / "clean", tmp_path / "clean.parquet")
    assert pq.read_table(tmp_path / "bad-ray.parquet").equals(pq.read_table(tmp_path / "bad.parquet"))
    report = _report(tmp_path / "r.json")
    assert report == _report(tmp_path / "l.json") and report["bad_rows"] == 6
    assert report["rows"] == report["clean"] + report["flagged"] + report["bad_rows"] == 999


def test_failed_run_leaves_no_output(ray_cluster, uf, tmp_path):
    """A null score in the last piece stops the run with the local message; no output folder, no temporary."""
    table = pa.concat_tables(
        [pajson.read_json(uf[0]), pq.read_table(uf[1]).select(pajson.read_json(uf[0]).schema.names)]
    )
    path = tmp_path / "scores.parquet"
    scores = [1.0] * (table.num_rows - 1) + [None]
    pq.write_table(table.append_column("s", pa.array(scores, pa.float64())), path)
    options = SelectOptions(score="s", default_fraction=0.5)
    with pytest.raises(InputError) as local:
        run_select([str(path)], options, out=tmp_path / "kept.parquet", progress=False)
    out = tmp_path / "results" / "kept"
    with pytest.raises(InputError) as on_ray:
        run_select_on_ray([str(path)], options, out=str(out), batch_rows=100)
    assert str(on_ray.value) == str(local.value) and "row 999 (0-based): column 's' is null" in str(local.value)
    assert not (tmp_path / "results").exists()


def test_existing_output_folder_is_refused(ray_cluster, uf, tmp_path):
    (tmp_path / "kept").mkdir()
    code, text = run_cli("select", *uf, "--out", tmp_path / "kept", "--engine", "ray")
    assert code == 1 and "already exists" in text and len(text.strip().splitlines()) == 1


def _worker_pids() -> set[int]:
    """Ray worker processes running the engine's piece tasks, by the titles Ray gives them (read from /proc: a
    look takes a millisecond where starting `ps` took tens, and the pieces of a small run go by in a few tenths)."""
    pids = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                title = Path(entry.path, "cmdline").read_bytes()
            except OSError:  # the process ended meanwhile
                continue
            if b"ray::skyfilter.Matching" in title:
                pids.add(int(entry.name))
    return pids


def test_killed_worker_is_retried(ray_cluster, shared_data, rmb, tmp_path):
    """A worker process killed while it matches pieces: Ray runs its task again, the output is the local one."""
    bench = [load_benchmark(str(shared_data / BENCH))]
    contaminate_local(rmb, bench, out=tmp_path / "clean.parquet", progress=False)
    killed: list[int] = []

    def kill_one() -> None:
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            for pid in _worker_pids():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.005)

    killer = threading.Thread(target=kill_one)
    killer.start()
    run_contaminate(rmb, bench, out=str(tmp_path / "clean"), batch_rows=20)
    killer.join()
    assert killed, "no worker process was seen running a piece"
    _same(tmp_path / "clean", tmp_path / "clean.parquet")


def test_without_ray_one_line(monkeypatch):
    import sys

    from skyshared.ray_session import EngineError, import_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(
        EngineError, match=r"skyfilter select with --engine ray needs Ray Data: pip install 'ray\[data\]'"
    ):
        import_ray("skyfilter select")


def test_datasets_in_and_out(ray_cluster, shared_data, uf):
    """skyfilter.ray.contaminate and .select take a Ray dataset (here in three blocks) and return it with the
    decision columns: the local functions' decisions, row for row."""
    import ray
    import skyfilter.ray as on_ray
    from skyfilter.contaminate import RESULT_COLUMNS, contaminate
    from skyfilter.select import REASONS, select_table

    first = pajson.read_json(uf[0])
    table = pa.concat_tables([first, pq.read_table(uf[1]).select(first.schema.names)]).combine_chunks()
    blocks = [table.slice(0, 300), table.slice(300, 450), table.slice(750)]
    bench = load_benchmark(str(shared_data / BENCH))

    got = on_ray.contaminate(ray.data.from_arrow(blocks), bench, ignore_common=50).to_arrow_refs()
    got = pa.concat_tables(ray.get(got))
    want = contaminate(table, bench, ignore_common=50)
    assert got.num_rows == table.num_rows
    # A map does not keep the dataset's order: rows are compared in the order of their unique source_index.
    order, want_order = (t.column("source_index").to_numpy().argsort() for t in (got, table))
    for name in RESULT_COLUMNS:
        assert got.column(name).take(order).equals(want.column(name).take(want_order)), name

    options = SELECTIONS["margin-and-top-fraction"]
    got = pa.concat_tables(ray.get(on_ray.select(ray.data.from_arrow(blocks), options, piece_rows=200).to_arrow_refs()))
    selection = select_table(table, options)
    order = got.column("source_index").to_numpy().argsort()
    want_reasons = [REASONS[c] for c in selection.decisions.reason[want_order]]
    assert got.column("reason").take(order).to_pylist() == want_reasons
    assert "top_fraction" in want_reasons and "kept" in want_reasons


def test_curate_sample_same_as_local(ray_cluster, tmp_path):
    """`skyfilter curate --sample --engine ray`: the same curated set, dropped rows and per-step counts."""
    outs = {}
    for engine in ("local", "ray"):
        outs[engine] = tmp_path / engine
        args = ["curate", "--recipe", "skywork-80k-v0.2", "--sample", "--no-plots", "-q", "--out", outs[engine]]
        code, text = run_cli(*args, "--engine", engine)
        assert code == 0, text
    for name in ("data/train-00000-of-00001.parquet", "dropped.parquet"):
        assert pq.read_table(outs["ray"] / name).equals(pq.read_table(outs["local"] / name)), name

    def steps(engine: str) -> list[dict]:
        manifest = json.loads((outs[engine] / "manifest.json").read_text())
        assert manifest["tool"]["engine"] == engine
        return [{k: v for k, v in step.items() if k != "seconds"} for step in manifest["steps"]]

    assert steps("ray") == steps("local")
    assert [s["step"] for s in steps("ray")] == ["convert", "dedup", "select", "decontaminate"]


def test_dedup_on_a_dataset(ray_cluster, shared_data):
    """skyfilter.ray.dedup on a Ray dataset in blocks: the decisions of skyfilter.dedup.dedup_pairs, row for row."""
    import ray
    import skyfilter.ray as on_ray
    from skyfilter.dedup import REASONS, DedupOptions, dedup_pairs
    from skyfilter.schema import to_pairs

    lines = _lines(shared_data / "prefs/rmb_pairwise/rmb_pairwise.jsonl.gz")[:1500]
    table = pajson.read_json(io.BytesIO(b"\n".join(lines + lines[:200]) + b"\n"))  # 200 exact copies at the end
    table = table.append_column("row", pa.array(range(table.num_rows)))
    blocks = [table.slice(0, 700), table.slice(700, 500), table.slice(1200)]
    options = DedupOptions()
    got = pa.concat_tables(ray.get(on_ray.dedup(ray.data.from_arrow(blocks), options, piece_rows=400).to_arrow_refs()))
    got = got.take(pa.array(got.column("row").to_numpy().argsort()))
    want = dedup_pairs(to_pairs(table, source="t"), options)
    assert got.column("reason").to_pylist() == [REASONS[r] for r in want.reason]
    assert got.column("duplicate_of").fill_null(-1).to_pylist() == want.other.tolist()
    assert got.column("cluster_id").to_pylist() == want.cluster_id.tolist()
    assert got.column("conflict").to_pylist() == want.conflict.tolist()
    assert {"exact_duplicate", "near_duplicate"} <= set(got.column("reason").to_pylist())


def test_missing_input_fails_at_once(tmp_path):
    """A missing input is the local engine's one line, before Ray starts (no cluster needed)."""
    missing = tmp_path / "missing.parquet"
    start = time.monotonic()
    code, text = run_cli("select", missing, "--engine", "ray", "--out", tmp_path / "kept")
    assert code == 1 and text.strip() == f"Error: {missing}: no such file"
    assert time.monotonic() - start < 5 and not (tmp_path / "kept").exists()


def test_a_group_that_keeps_nothing(ray_cluster):
    """A fraction of 0 for one group (no last kept row) next to groups that keep some, over several pieces."""
    import ray
    import skyfilter.ray as on_ray
    from skyfilter.select import REASONS, select_table

    table = pa.table({"s": [1.0, 2.0, 2.0, 0.5, 3.0, 1.0, -0.0, 0.0], "g": list("aabbbaab"), "row": list(range(8))})
    options = SelectOptions(score="s", group_by="g", fractions={"a": 0.0}, default_fraction=0.5)
    got = on_ray.select(ray.data.from_arrow([table.slice(0, 3), table.slice(3)]), options, piece_rows=2)
    got = pa.concat_tables(ray.get(got.to_arrow_refs())).sort_by("row")
    want = [REASONS[c] for c in select_table(table, options).decisions.reason]
    assert got.column("reason").to_pylist() == want and want.count("kept") == 2
