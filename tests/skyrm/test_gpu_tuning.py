"""Issue 21's GPU parts on the CPU, fast: the memory plan against a hand computation and the measured peaks of the
earlier GPU runs, the 8-GPU estimate by hand, the trace summary of a hand-made GPU trace and of a real CPU trace, and
bench/gpu_check.py refusing an unknown part and leaving out what its time budget cannot hold; and, slow, the parts'
measured runs in the check's reduced mode."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
BENCH = Path(__file__).resolve().parents[2] / "bench"
GIB = 2**30


def bench_module(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


memory, profile = bench_module("gpu_memory"), bench_module("gpu_profile")
REDUCED = {"hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "vocab_size": 512}  # fmt: skip
LLAMA_1B = {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
            "num_key_value_heads": 8, "vocab_size": 128_256}  # fmt: skip
LLAMA_3B = {"hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 28, "num_attention_heads": 24,
            "num_key_value_heads": 8, "vocab_size": 128_256}  # fmt: skip
LLAMA_8B = {"hidden_size": 4096, "intermediate_size": 14_336, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 8, "vocab_size": 128_256}  # fmt: skip


def test_the_memory_plan_by_hand():
    from skyrm.model import tiny_config
    from transformers import LlamaForSequenceClassification

    # a layer: q, o 64x64; k, v 64x32 (2 KV heads of 16); gate, up, down 64x172; two norms of 64
    p = memory.parameters(REDUCED)
    assert (p["layer"], p["root"], p["total"]) == (45_440, 32_896, 123_776)
    assert p["total"] == sum(x.numel() for x in LlamaForSequenceClassification(tiny_config(**REDUCED)).parameters())
    # Llama-3.1-8B's 8,030,261,248 parameters less its LM head (128,256 x 4,096), plus the 4,096 of the score head
    assert memory.parameters(LLAMA_8B)["total"] == 8_030_261_248 - 525_336_576 + 4096
    # a token keeps 20h + 4kv + 8i = 2,784 bytes a layer, 8h = 512 outside; with checkpointing 2h a layer + one layer
    assert memory.activation_bytes(REDUCED, False) == 2 * 2784 + 512
    assert memory.activation_bytes(REDUCED, True) == 2 * 64 * 2 + 2784 + 512
    one = memory.plan(REDUCED, 1, 1000, False, False)
    assert one["weights"] == one["gradients"] == one["adam_temporary"] == 4 * 123_776
    assert one["gathered"] == 2 * 32_896 + 4 * 45_440 + 6 * 45_440
    assert one["activations"] == 1000 * 6080
    assert one["peak"] == one["backward_peak"] == 16 * 123_776 + one["gathered"] + 6_080_000
    assert one["step_peak"] == 20 * 123_776
    eight = memory.plan(REDUCED, 8, 1000, False, True, reshard=False)
    assert eight["adam_moments"] == 123_776 and eight["adam_temporary"] == 0
    assert eight["gathered"] == 2 * 32_896 + 2 * 2 * 45_440 + 6 * 45_440  # every layer kept gathered
    # the peaks measured on an H200 (docs/benchmarks.md): 1B eager at 16,384 tokens, 46.3 GiB (run 3); 3B with
    # activation checkpointing, 59.9 GiB (run 4), the foreach AdamW's step
    assert memory.plan(LLAMA_1B, 1, 16_384, False, False)["peak"] / GIB == pytest.approx(46.3, rel=0.01)
    assert memory.plan(LLAMA_3B, 1, 16_384, True, False)["peak"] / GIB == pytest.approx(59.9, rel=0.01)
    # the 8B model on one H200: not with the foreach AdamW's temporary, yes with the fused AdamW
    usable = memory.H200_BYTES - memory.RESERVED_BYTES
    assert memory.largest_tokens(LLAMA_8B, 1, True, False, usable, 8192) == 0
    assert memory.largest_tokens(LLAMA_8B, 1, True, True, usable, 8192) == 32_768


def test_the_eight_gpu_estimate_by_hand():
    total = memory.parameters(LLAMA_1B)["total"]
    bandwidth = memory.NVLINK_BYTES_S * memory.NVLINK_EFFICIENCY
    e = memory.eight_gpus(LLAMA_1B, 60_000.0, 0.4, 15_000.0)
    assert e["bytes"] == pytest.approx(7 / 8 * total * 8)  # two bf16 gathers and an fp32 reduce-scatter
    assert e["communication_s"] == pytest.approx(7 * total / bandwidth)
    assert (e["tokens_per_s"], e["mfu"], e["compute_s"]) == (60_000.0, 0.4, 0.25)  # compute-bound
    fast = memory.eight_gpus(LLAMA_1B, 60_000_000.0, 0.4, 15_000.0, reshard=False)  # communication-bound
    slowdown = (7 / 8 * total * 6 / bandwidth) / (15_000 / 60_000_000)
    assert fast["tokens_per_s"] == pytest.approx(60_000_000 / slowdown) and fast["mfu"] == pytest.approx(0.4 / slowdown)


def _event(name, cat, ts, dur, external=None, tid=1):
    args = {} if external is None else {"External id": external}
    return {"ph": "X", "cat": cat, "name": name, "pid": 1, "tid": tid, "ts": ts, "dur": dur, "args": args}


def test_a_gpu_trace_is_summed_by_kind():
    host = [_event("ProfilerStep#3", "user_annotation", 0, 30), _event("ProfilerStep#4", "user_annotation", 30, 30),
            _event("aten::mm", "cpu_op", 1, 4, 1), _event("Optimizer.step#AdamW.step", "user_annotation", 10, 10, 2),
            _event("aten::_foreach_add_", "cpu_op", 11, 2, 3), _event("FSDP::all_gather", "user_annotation", 20, 5, 4),
            _event("aten::copy_", "cpu_op", 21, 1, 5), _event("aten::mul", "cpu_op", 40, 1, 6)]  # fmt: skip
    device = [_event("sm90_xmma_gemm_bf16bf16_bf16f32", "kernel", 100, 50, 1, tid=7),
              _event("ncclDevKernel_AllGather_RING_LL", "kernel", 120, 20, 5, tid=20),  # beside the GEMM
              _event("multi_tensor_apply_kernel", "kernel", 160, 10, 3, tid=7),
              _event("triton_poi_fused_mul_silu_0", "kernel", 175, 5, tid=7),
              _event("triton_tem_fused_flex_attention_0", "kernel", 185, 15, tid=7),
              _event("Memcpy HtoD (Pinned -> Device)", "gpu_memcpy", 205, 5, tid=7),
              _event("vectorized_elementwise_kernel", "kernel", 212, 4, 6, tid=7)]  # fmt: skip
    s = profile.summarise(host + device)
    assert (s["work"], s["steps"], s["events"]) == ("device", 2, 7)
    ms = 1e-3 / 2  # microseconds to milliseconds a step
    # wall 100..216; busy: 50 + 10 + 5 + 15 + 5 + 4; the all-gather ran beside the GEMM
    assert s["wall_ms"] == pytest.approx(116 * ms) and s["busy_ms"] == pytest.approx(89 * ms)
    assert s["idle_ms"] == pytest.approx(27 * ms) and s["overlap_ms"] == pytest.approx(20 * ms)
    kinds = {k: v["ms"] / ms for k, v in s["kinds"].items()}
    assert kinds == pytest.approx({"matmul": 50, "attention": 15, "elementwise": 9, "optimizer": 10, "fsdp": 25,
                                   "other": 0})  # fmt: skip
    assert s["top"][0]["name"].startswith("sm90_xmma_gemm") and s["top"][0]["calls"] == 0.5
    assert "idle" in "\n".join(profile.table(s))


def test_a_cpu_trace_is_summed_by_its_operators(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.SiLU(), torch.nn.Linear(64, 1))
    optimizer = torch.optim.AdamW(model.parameters())
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as traced:
        for _ in range(2):
            model(torch.randn(16, 32)).sum().backward()
            optimizer.step()
            optimizer.zero_grad()
            traced.step()
    traced.export_chrome_trace(str(tmp_path / "trace.json"))
    s = profile.summarise(profile.load(tmp_path / "trace.json"))
    assert s["work"] == "host" and s["kinds"]["matmul"]["ms"] > 0 and s["kinds"]["optimizer"]["ms"] > 0
    assert s["busy_ms"] + s["idle_ms"] == pytest.approx(s["wall_ms"])
    assert sum(v["ms"] for v in s["kinds"].values()) - s["overlap_ms"] == pytest.approx(s["busy_ms"])


def test_unknown_parts_are_refused_and_the_budget_is_kept(tmp_path):
    def check(*flags: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(BENCH / "gpu_check.py"), "--reduced", "--synthetic", *flags],
                              capture_output=True, text=True, timeout=300)  # fmt: skip

    refused = check("--only", "skyrm-reduced-flexc+zzz")
    assert refused.returncode != 0 and "unknown option 'zzz'" in refused.stderr
    assert "no such part" in check("--only", "profile-9b").stderr
    out = tmp_path / "gpu_check.json"
    done = check("--only", "profile-reduced,memory-reduced", "--budget-s", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert set(result["skipped"]) == {"profile-reduced", "memory-reduced"} and not result["results"]
    assert any("123,776 parameters" in line for line in result["table"])  # the plan, without its measured run


@pytest.mark.slow
def test_the_parts_run_reduced_on_the_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    parts = "profile-reduced,skyrm-reduced-packed+ac1,memory-reduced"
    command = [sys.executable, str(BENCH / "gpu_check.py"), "--reduced", "--synthetic", "--only", parts,
               "--variants", "nrs", "--out", str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    control, checkpointed, measured = (result["results"][side] for side in parts.split(","))
    assert control["base"] == "packed" and control["timed_steps"] == 2 and len(control["losses"]) == 6
    assert control["profile"]["work"] == "host" and control["profile"]["steps"] == 2
    assert Path(control["trace_file"]) == tmp_path / "profile-reduced-trace.json.gz"
    kept = control["variants"]["packed+nrs"]
    assert not kept["reshard_after_forward"] and kept["losses"] == control["losses"][:3]  # the same steps
    assert checkpointed["activation_checkpointing"] and 0 < checkpointed["packing"]["fill"] <= 1
    for run in (control, checkpointed, measured):  # the steps that compiled nothing: some of the timed ones
        assert 1 <= run["steady_steps"] <= run["timed_steps"] and run["steady_tokens_per_s"] > 0
        assert len(run["step_tokens_per_s"]) == len(run["losses"]) and run["graphs_compiled"] >= 0
    assert measured["activation_checkpointing"] and measured["fused_optimizer"] and measured["peak_gib"] > 0
    table = "\n".join(result["table"])
    assert "the control's trace" in table and "fits up to" in table and "8 GPUs, per GPU" in table
