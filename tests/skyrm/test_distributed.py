"""Processes and checkpoints: two processes under torchrun (FSDP2 over gloo on the CPU) train exactly what one
does, and a run killed after a checkpoint and resumed ends with the same weights as one never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
safetensors = pytest.importorskip("safetensors.torch")
from tests.skyrm.test_trainer import metrics, write_task  # noqa: E402

ENV = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
#: A sitecustomize that notes the rank of every process that tokenizes the data (in SKYRM_TEST_TOKENIZED).
COUNT_TOKENIZING = """
import os
import skyrm.trainer as trainer

_tokenize = trainer._tokenize


def counted(*args, **kwargs):
    with open(os.environ["SKYRM_TEST_TOKENIZED"], "a") as f:
        f.write(os.environ.get("RANK", "0") + "\\n")
    return _tokenize(*args, **kwargs)


trainer._tokenize = counted
"""


def flags(data: Path, out: Path, **extra) -> list[str]:
    settings = {"preset": "tiny", "data": data, "output-dir": out, "batch-pairs": 8, "micro-batch-tokens": 512,
                "max-length": 128, "lr": 3e-3, "dtype": "fp32", **extra}  # fmt: skip
    return [part for k, v in settings.items() for part in (f"--{k}", str(v)) if part]  # "" marks a bare flag


def run(command: list[str], **env) -> subprocess.CompletedProcess:
    done = subprocess.run(command, env=os.environ | ENV | env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def weights(out: Path) -> dict:
    return safetensors.load_file(out / "model" / "model.safetensors")


@pytest.mark.parametrize("grad_sync", ["micro-batch", "step"])
def test_two_processes_train_what_one_does(tmp_path, grad_sync):
    write_task(tmp_path / "train.parquet", 128, 0)
    # packed rows (block mask) under FSDP too; small micro-batches, so that a step has several
    steps = {"max-steps": 6, "checkpoint-every": 3, "packing": "", "micro-batch-tokens": 256, "grad-sync": grad_sync}
    from skyrm.train import main as train  # one process: this one (the two below compare within a tolerance)

    assert train(flags(tmp_path / "train.parquet", tmp_path / "one", **steps, **{"no-tokenize-cache": ""})) == 0
    # the data is tokenized once, by rank 0; rank 1 reads the token ids from the cache
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(COUNT_TOKENIZING)
    counted = tmp_path / "tokenized.txt"
    hook = {"PYTHONPATH": os.pathsep.join([str(tmp_path / "hook"), *sys.path]), "SKYRM_TEST_TOKENIZED": str(counted)}
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "skyrm.train",
         *flags(tmp_path / "train.parquet", tmp_path / "two", **steps, **{"cache-dir": tmp_path / "cache"})],
        **hook)  # fmt: skip
    assert counted.read_text().split() == ["0"] and len(list((tmp_path / "cache").glob("tokenized/*.arrow"))) == 1
    one, two = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert [r["step"] for r in two] == list(range(1, 7))
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], rel=1e-5)
    assert [r["tokens"] for r in two] == [r["tokens"] for r in one]
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["world"] == 2
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5, msg=name)
    assert any(not torch.equal(a[n], weights_before) for n, weights_before in initial_weights(tmp_path).items())


def initial_weights(tmp_path: Path) -> dict:
    """The tiny model's weights before training (one step at learning rate ~0 would not do: export them)."""
    from skyrm.config import load_config
    from skyrm.trainer import build_model

    model, _ = build_model(load_config(preset="tiny"))
    return {k: v for k, v in model.state_dict().items()}


def test_a_killed_run_resumes_exactly(tmp_path):
    write_task(tmp_path / "train.parquet", 128, 1)
    steps = {"max-steps": 40, "epochs": 10, "checkpoint-every": 5}
    data = tmp_path / "train.parquet"
    run([sys.executable, "-m", "skyrm.train", *flags(data, tmp_path / "whole", **steps)])

    out = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "skyrm.train", *flags(data, out, **steps)], env=os.environ | ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 300
    while not (out / "checkpoints" / "step-00000005" / "trainer.json").exists():
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "summary.json").exists(), "the run finished before it was killed"
    last = max(r["step"] for r in metrics(out))
    assert 5 <= last < 40
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:  # as if the kill had cut a line short
        f.write('{"step": 41, "lo')

    with pytest.raises(subprocess.CalledProcessError):  # a changed run is refused
        subprocess.run([sys.executable, "-m", "skyrm.train", *flags(data, out, **{**steps, "max-steps": 100}),
                        "--resume"], env=os.environ | ENV, check=True, capture_output=True)  # fmt: skip
    run([sys.executable, "-m", "skyrm.train", *flags(data, out, **steps), "--resume"])
    assert metrics(out) == [
        {**r, "tokens_per_s": m["tokens_per_s"]} for r, m in zip(metrics(tmp_path / "whole"), metrics(out), strict=True)
    ]
    a, b = weights(tmp_path / "whole"), weights(out)
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert len(list((out / "checkpoints").glob("step-*"))) == 2  # the last two are kept
