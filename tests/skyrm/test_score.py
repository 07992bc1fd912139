"""``skyrm score``: the same rewards as ``skyrm.eval``, an output ``skyfilter select`` and the recipe's WildGuardMix
stage read as it is, per-response scores, a killed run resumed, and the same scores from two processes under
torchrun and from a Ray actor pool."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")
from tests.skyrm.test_trainer import write_task  # noqa: E402

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
SCORE = [sys.executable, "-m", "skyrm.cli", "score"]


def scores_of(path) -> pa.Table:
    return pq.read_table(path)


def test_scores_equal_eval_rewards_and_name_the_model(tmp_path):
    from skyrm.eval.runner import evaluate, load_benchmark, load_model
    from skyrm.eval.sample import sample_benchmark
    from skyrm.score import score_pool, weights_sha256

    bench = tmp_path / "bench.parquet"
    pq.write_table(sample_benchmark(), bench)
    summary = score_pool(str(bench), "tiny", tmp_path / "scores.parquet", progress=False, log=lambda _: None)
    model, tokenizer = load_model("tiny")
    records = evaluate(model, tokenizer, load_benchmark(bench_file=str(bench)), progress=False)
    got = scores_of(tmp_path / "scores.parquet")
    assert got.column_names == ["input_row", "rm_chosen", "rm_rejected", "rm_margin"]
    assert got["input_row"].to_pylist() == list(range(len(records)))
    assert got["rm_chosen"].to_pylist() == pytest.approx([r["chosen"] for r in records], abs=1e-5)
    assert got["rm_rejected"].to_pylist() == pytest.approx([r["rejected"] for r in records], abs=1e-5)
    margins = [r["chosen"] - r["rejected"] for r in records]
    assert got["rm_margin"].to_pylist() == pytest.approx(margins, abs=1e-5)
    meta = got.schema.metadata
    assert meta[b"skyrm.model"] == b"tiny" and meta[b"skyrm.model_sha256"].decode() == weights_sha256(model)
    assert summary["scored_pairs"] == len(records) and summary["ranked_correctly"] == sum(m > 0 for m in margins)
    assert not (tmp_path / ".scores.parquet.partial").exists()


def test_a_system_turn_gets_the_same_rewards_in_score_and_eval(tmp_path):
    """A prompt's system turn was read as a user turn (and the user turn as the assistant's) by eval's encoder, which
    serve's /score and /compare use too: their rewards differed from skyrm score's for the same pair."""
    from skyrm.eval.runner import evaluate, load_benchmark, load_model
    from skyrm.score import score_pool

    prompt = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a prime."}]
    rows = [{"prompt": prompt, "chosen": "7", "rejected": "Nine", "subset": "llmbar-natural", "id": "0"}]
    bench = tmp_path / "system.parquet"
    pq.write_table(pa.Table.from_pylist(rows), bench)
    score_pool(str(bench), "tiny", tmp_path / "scores.parquet", progress=False, log=lambda _: None)
    model, tokenizer = load_model("tiny")
    [record] = evaluate(model, tokenizer, load_benchmark(bench_file=str(bench)), progress=False)
    got = scores_of(tmp_path / "scores.parquet").to_pylist()[0]
    assert (got["rm_chosen"], got["rm_rejected"]) == pytest.approx((record["chosen"], record["rejected"]), abs=1e-5)


def test_a_template_that_refuses_a_conversation_is_named(tmp_path, tiny_model_dir, capsys):
    """Under a template that takes no system turn (Gemma's), score gives such a pair null scores and says why;
    eval stops with one line naming the example (every example counts in the accuracy)."""
    import transformers
    from skyrm.eval.__main__ import main as evaluate
    from skyrm.score import score_pool

    from tests.skyrm.test_data import NO_SYSTEM_TURN

    model = tmp_path / "no-system"
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = NO_SYSTEM_TURN + tokenizer.chat_template
    tokenizer.save_pretrained(model)
    transformers.AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).save_pretrained(model)
    system = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a prime."}]
    rows = [{"prompt": prompt, "chosen": "7", "rejected": "Nine", "subset": "chat", "id": str(i)}
            for i, prompt in enumerate([system[1:], system])]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "pairs.parquet")
    lines = []
    summary = score_pool(tmp_path / "pairs.parquet", str(model), tmp_path / "s.parquet", progress=False,
                         log=lines.append)  # fmt: skip
    assert summary["scored_pairs"] == 1 and summary["unscored_reasons"] == {"template_refused": 1}
    assert "1 template_refused (the chat template refuses the conversation" in lines[-1]
    assert scores_of(tmp_path / "s.parquet")["rm_chosen"].to_pylist()[1] is None
    assert evaluate(["--model", str(model), "--bench-file", str(tmp_path / "pairs.parquet")]) == 1
    err = capsys.readouterr().err
    assert (
        "pairs.parquet: example 1 (subset chat): the chat template refuses the conversation: System role not supported"
        in err
        and "Traceback" not in err
    )


def mixed_task(path, n: int, seed: int) -> None:
    """:func:`write_task`'s pairs with every third one the wrong way round: any model ranks some of them wrong."""
    write_task(path, n, seed)
    rows = pq.read_table(path).to_pylist()
    for row in rows[::3]:
        row["chosen"], row["rejected"] = row["rejected"], row["chosen"]
    pq.write_table(pa.Table.from_pylist(rows), path)


def test_select_reads_the_scores_as_they_are(tmp_path):
    from skyrm.cli import main

    mixed_task(tmp_path / "pairs.parquet", 40, 0)
    for extra, name in [([], "scores.parquet"), (["--keep-input"], "with_input.parquet")]:
        assert main(["score", str(tmp_path / "pairs.parquet"), "--model", "tiny", "--out", str(tmp_path / name), "-q",
                     *extra]) == 0  # fmt: skip
    scores = scores_of(tmp_path / "scores.parquet")
    agree = [r for r, m in zip(scores["input_row"].to_pylist(), scores["rm_margin"].to_pylist(), strict=True) if m > 0]
    assert 0 < len(agree) < 40  # a random model agrees with some pairs, not all
    for name in ("scores.parquet", "with_input.parquet"):
        kept = tmp_path / f"kept-{name}"
        done = subprocess.run(["skyfilter", "select", str(tmp_path / name), "--rm-chosen", "rm_chosen",
                               "--rm-rejected", "rm_rejected", "--out", str(kept), "-q"], capture_output=True,
                              text=True)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert pq.read_table(kept)["input_row"].to_pylist() == agree
    with_input = pq.read_table(tmp_path / "kept-with_input.parquet")
    pairs = pq.read_table(tmp_path / "pairs.parquet").take(agree)
    assert with_input.select(pairs.column_names).equals(pairs)


def test_the_recipe_reads_the_scores_for_wildguardmix(tmp_path):
    """Stage 1 of the curation in the pairs layout, scored, and stage 2 (reading "both") with those scores: the
    WildGuardMix pairs the model ranks wrong are dropped as rm_agreement, the others kept."""
    from skyfilter import load_recipe, run_curate
    from skyrm.score import ScoreOptions, score_pool

    recipe = load_recipe("skywork-80k-v0.2")
    run_curate(dataclasses.replace(recipe, output="pairs"), tmp_path / "stage1", sample=True, plots=False,
               log=lambda _: None)  # fmt: skip
    stage1 = pq.read_table(tmp_path / "stage1" / "data" / "train-00000-of-00001.parquet")
    pq.write_table(stage1.filter(pa.compute.equal(stage1["source"], "WildGuardMix")), tmp_path / "guard.parquet")
    scores = tmp_path / "scores.parquet"
    score_pool(str(tmp_path / "guard.parquet"), "tiny", scores, ScoreOptions(max_length=256), progress=False,
               log=lambda _: None)  # fmt: skip
    table = scores_of(scores)
    assert {"source", "source_row"} <= set(table.column_names)
    guard = table["rm_margin"].to_pylist()
    wrong = sum(m <= 0 for m in guard)
    assert guard and 0 < wrong < len(guard)
    rule = dataclasses.replace(recipe.wildguardmix, reading="both", scores=str(scores))
    manifest = run_curate(dataclasses.replace(recipe, wildguardmix=rule), tmp_path / "stage2", sample=True,
                          plots=False, log=lambda _: None)  # fmt: skip
    select = next(s for s in manifest.steps if s["step"] == "select")
    assert select["sources"]["WildGuardMix"]["dropped"].get("rm_agreement") == wrong
    assert select["sources"]["WildGuardMix"]["out"] == len(guard) - wrong


def test_each_response_of_a_row(tmp_path):
    from skyrm.eval.runner import Encoder, load_model, score_sequences
    from skyrm.padding import pad_model
    from skyrm.score import ScoreOptions, score_pool

    rows = [{"instruction": f"Question {i}?", "responses": [f"Answer {i}.", f"A longer answer {i}, kindly.", ""]}
            for i in range(5)]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "magpie.parquet")
    score_pool(str(tmp_path / "magpie.parquet"), "tiny", tmp_path / "s.parquet", ScoreOptions(responses="responses"),
               progress=False, log=lambda _: None)  # fmt: skip
    got = scores_of(tmp_path / "s.parquet")["rm_scores"].to_pylist()
    model, tokenizer = load_model("tiny")
    encode = Encoder(tokenizer)
    sequences = [encode(r["instruction"], answer) for r in rows for answer in r["responses"][:2]]
    want = score_sequences(model, sequences, 4096, pad_model(model, tokenizer), "cpu", progress=False)
    assert [v[:2] for v in got] == [pytest.approx(want[2 * i : 2 * i + 2], abs=1e-5) for i in range(5)]
    assert all(v[2] is None for v in got)  # an empty response has no score


def test_an_interrupt_before_the_first_shard_says_nothing_was_kept(tmp_path, monkeypatch, capsys):
    """Ctrl-C before a shard was written said "0 shard(s) ... kept in FOLDER" of a folder the run had removed."""
    import skyrm.score
    from skyrm.cli import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(skyrm.score, "score_pool", interrupted)
    out = tmp_path / "s.parquet"
    assert main(["score", str(tmp_path / "pairs.parquet"), "--model", "tiny", "--out", str(out), "-q"]) == 130
    said = capsys.readouterr().err.strip().splitlines()[-1]
    assert said == f"interrupted before the first shard of {out} was scored: nothing was kept"


def test_a_killed_run_resumes_from_its_shards(tmp_path):
    write_task(tmp_path / "pairs.parquet", 240, 1)
    data = str(tmp_path / "pairs.parquet")
    whole = [*SCORE, data, "--model", "tiny", "--shard-rows", "10", "-q"]
    done = subprocess.run([*whole, "--out", str(tmp_path / "whole.parquet")], env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

    out = tmp_path / "killed.parquet"
    work = tmp_path / ".killed.parquet.partial"
    for shards, sig in ((1, signal.SIGINT), (3, signal.SIGKILL)):  # Ctrl-C, then a kill
        process = subprocess.Popen([*whole, "--out", str(out)], env=ENV, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)  # fmt: skip
        deadline = time.monotonic() + 120
        while len(list(work.glob("shard-*.parquet"))) < shards:
            assert process.poll() is None and time.monotonic() < deadline, "the run ended before its shards"
            time.sleep(0.01)
        process.send_signal(sig)
        said = process.communicate()[1]
        assert not out.exists()
        kept = len(list(work.glob("shard-*.parquet")))
        if sig == signal.SIGINT:  # one line, not a traceback
            assert process.returncode == 130 and "Traceback" not in said, said
            assert said.strip().splitlines()[-1] == (
                f"interrupted: {kept} shard(s) of {out} kept in {work}; the same command resumes from them"
            )

    other = subprocess.run([*SCORE, data, "--model", "tiny", "--shard-rows", "20", "-q", "--out", str(out)],
                           env=ENV, capture_output=True, text=True)  # fmt: skip
    assert other.returncode == 1 and "other settings (shard_rows: 10 then, 20 now)" in other.stderr
    assert not out.exists()

    resumed = subprocess.run([*whole, "--out", str(out)], env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {kept} shards" in resumed.stderr
    assert scores_of(out).equals(scores_of(tmp_path / "whole.parquet"))
    assert not work.exists()


def test_two_processes_under_torchrun_score_what_one_does(tmp_path):
    write_task(tmp_path / "pairs.parquet", 90, 2)
    data = str(tmp_path / "pairs.parquet")
    args = [data, "--model", "tiny", "--shard-rows", "16", "-q"]
    one = subprocess.run([*SCORE, *args, "--out", str(tmp_path / "one.parquet")], env=ENV, capture_output=True,
                         text=True)  # fmt: skip
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "skyrm.cli", "score", *args, "--out", str(tmp_path / "two.parquet")], env=ENV,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    assert scores_of(tmp_path / "two.parquet").equals(scores_of(tmp_path / "one.parquet"))


def test_a_ray_actor_pool_scores_what_one_process_does(tmp_path):
    pytest.importorskip("ray.data")
    from skyrm.score import ScoreOptions, score_pool

    write_task(tmp_path / "pairs.parquet", 60, 3)
    data = str(tmp_path / "pairs.parquet")
    options = ScoreOptions(shard_rows=16)
    score_pool(data, "tiny", tmp_path / "local.parquet", options, progress=False, log=lambda _: None)
    summary = score_pool(data, "tiny", tmp_path / "ray.parquet", options, engine="ray", progress=False,
                         log=lambda _: None)  # fmt: skip
    assert scores_of(tmp_path / "ray.parquet").equals(scores_of(tmp_path / "local.parquet"))
    assert summary["rows"] == 60
    assert json.loads(scores_of(tmp_path / "ray.parquet").schema.metadata[b"skyrm.options"])["shard_rows"] == 16


def test_bad_input_is_one_line_before_any_work(tmp_path, capsys):
    from skyrm.cli import main

    pq.write_table(pa.table({"prompt": ["a"], "answer": ["b"]}), tmp_path / "odd.parquet")
    cases = [
        ([str(tmp_path / "odd.parquet")], "pairs need `chosen` and `rejected` columns"),
        ([str(tmp_path / "missing.parquet")], "missing.parquet: no such file"),
        ([str(tmp_path / "odd.parquet"), "--responses", "answers"], "no column 'answers' (--responses)"),
        ([str(tmp_path / "odd.parquet"), "--responses", "answer"], "must hold lists of response texts, not string"),
    ]
    for args, message in cases:
        start = time.monotonic()
        assert main(["score", *args, "--model", "tiny", "--out", str(tmp_path / "s.parquet")]) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert time.monotonic() - start < 10 and not (tmp_path / "s.parquet").exists()
    assert main(["score", str(tmp_path / "odd.parquet"), "--model", "tiny", "--out", str(tmp_path / "s.csv")]) == 1
    assert "--out must be a .parquet file" in capsys.readouterr().err
    # a model that does not load leaves no work folder behind to refuse the corrected command
    pq.write_table(pa.table({"prompt": ["a"], "chosen": ["b"], "rejected": ["c"]}), tmp_path / "pairs.parquet")
    score = ["score", str(tmp_path / "pairs.parquet"), "--out", str(tmp_path / "s.parquet"), "-q"]
    assert main([*score, "--model", str(tmp_path / "no-such-model")]) == 1 and "no-such-model: no such folder" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / ".s.parquet.partial").exists()
    assert main([*score, "--model", "tiny", "--batch-tokens", "0"]) == 1
    assert "--batch-tokens must be at least 1, got 0" in capsys.readouterr().err
    assert main([*score, "--model", "tiny"]) == 0 and (tmp_path / "s.parquet").exists()


def test_the_python_call_takes_paths_and_leaves_nothing_when_it_cannot_start(tmp_path, tiny_model_dir, monkeypatch):
    """``score_pool`` takes pathlib paths for the input and the model; a table in their place is one clear error; a
    work folder that cannot be set up (here its settings file cannot be written) leaves no temporary folder."""
    from pathlib import Path as PathType

    import skyrm.score
    from skyrm.score import ScoreError, ScoreOptions, score_pool

    pq.write_table(
        pa.table({"prompt": ["a", "b"], "chosen": ["c", "d"], "rejected": ["e", "f"]}), tmp_path / "p.parquet"
    )
    quiet = {"progress": False, "log": lambda _: None}
    with pytest.raises(ScoreError, match=r"the input must be a file, .* not a Table"):
        score_pool(pa.table({"chosen": ["c"]}), "tiny", tmp_path / "s.parquet", **quiet)
    real_write = PathType.write_text

    def full_disk(self, *args, **kwargs):
        if self.name == "settings.json":
            raise OSError(28, "No space left on device")
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(PathType, "write_text", full_disk)
    with pytest.raises(OSError, match="No space left"):
        score_pool(tmp_path / "p.parquet", "tiny", tmp_path / "s.parquet", **quiet)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.parquet"]
    monkeypatch.setattr(PathType, "write_text", real_write)
    summary = score_pool(tmp_path / "p.parquet", PathType(tiny_model_dir), tmp_path / "s.parquet", ScoreOptions(),
                         **quiet)  # fmt: skip
    assert summary["rows"] == 2 and scores_of(tmp_path / "s.parquet").num_rows == 2
    assert skyrm.score.work_folder(tmp_path / "s.parquet").exists() is False


def test_a_new_batch_size_resumes_where_other_settings_are_refused():
    from skyrm.score import ScoreOptions, _differences, _settings

    first = _settings("pairs.parquet", "tiny", ScoreOptions(token_budget=4096), 10)
    assert first == _settings("pairs.parquet", "tiny", ScoreOptions(token_budget=512), 10)  # the scores are the same
    later = _settings("pairs.parquet", "run/model", ScoreOptions(max_length=512), 10)
    assert _differences(first, later) == "model: 'tiny' then, 'run/model' now; max_length: None then, 512 now"


def test_transcripts_are_unscored_as_training_drops_them(tmp_path, shared_data, capsys):
    """HH-RLHF's real transcripts (chosen/rejected strings, no prompt) are pairs without an answer to score, as
    training reads them: refused before the model loads, with the conversion to run (it wrote a file of nulls);
    converted by skyfilter.to_pairs, the same rows are scored, a blank answer counted with its reason."""
    import gzip

    from skyfilter import to_pairs
    from skyrm.cli import main

    with gzip.open(shared_data / "prefs/hh_rlhf_harmless_base_test/test.jsonl.gz", "rt") as source:
        rows = [json.loads(next(source)) for _ in range(12)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "hh.parquet")
    assert main(["score", str(tmp_path / "hh.parquet"), "--model", "tiny", "--out", str(tmp_path / "s.parquet"),
                 "-q"]) == 1  # fmt: skip
    said = capsys.readouterr().err
    assert "hh.parquet: none of its 12 pairs can be scored, as training would drop them all: 12 no_answer (" in said
    assert "`skyfilter convert`" in said and not (tmp_path / "s.parquet").exists()
    pairs = to_pairs(pa.Table.from_pylist(rows)).to_pylist()
    pairs[3]["rejected"] = [{"role": "assistant", "content": " "}]  # a blank answer: no preference either
    pq.write_table(pa.Table.from_pylist(pairs), tmp_path / "pairs.parquet")
    assert main(["score", str(tmp_path / "pairs.parquet"), "--model", "tiny", "--out", str(tmp_path / "p.parquet"),
                 "-q"]) == 0  # fmt: skip
    assert scores_of(tmp_path / "p.parquet").column("rm_rejected").null_count == 1
    assert "scored 11 of 12 pairs" in (said := capsys.readouterr().err) and "1 empty_answer (an answer is blank" in said
