"""bench/gpu_check.py (the GPU check of issue 8) in its reduced CPU mode: every part runs and its numbers hold
where they can be known exactly on a CPU in fp32."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")
SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.py"


@pytest.mark.slow
def test_the_gpu_check_runs_reduced_on_the_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--reduced", "--synthetic", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    runs = result["results"]
    assert not [side for side, r in runs.items() if "error" in r]
    for side in ("skyrm-reduced-packed", "skyrm-reduced-padded", "trl-reduced"):
        assert runs[side]["tokens_per_s"] > 0 and runs[side]["peak_gib"] > 0 and len(runs[side]["losses"]) == 3
    # same model, pairs and order: the three first losses agree (fp32)
    assert runs["skyrm-reduced-packed"]["losses"][0] == pytest.approx(runs["trl-reduced"]["losses"][0], rel=1e-4)
    gaps = runs["numerics"]["max_difference"]  # fp32 on the CPU: every layout gives the padded rows' rewards
    assert runs["numerics"]["dtype"] == "float32" and "fp32_max_difference" not in runs["numerics"]
    assert max(gaps["packed"], gaps["flex"], gaps["eager"]) < 1e-4  # dense block mask, flex BlockMask, eager
    tiny_device, tiny_cpu = runs["tiny-gpu"], runs["tiny-cpu"]
    assert tiny_device["losses"] == pytest.approx(tiny_cpu["losses"], rel=1e-6)  # both on the CPU here
    exported, trained = tiny_device["exported"], tiny_device["eval"]
    assert exported["reward_mean"] == pytest.approx(trained["reward_mean"], abs=1e-4)
    assert exported["accuracy"] == pytest.approx(trained["accuracy"])
    from skyrm.eval.sample import sample_benchmark

    assert runs["eval"]["pairs"] == len(sample_benchmark()) and runs["eval"]["pairs_per_s"] > 0
    table = "\n".join(result["table"])
    assert "rewards vs padded rows" in table and "vs TRL" in table and "pairs/s" in table
    assert result["info"]["data"].startswith("synthetic")
