"""Sums a torch.profiler trace (``skyrm train --profile-steps N``: gzipped Chrome JSON) by kind of work, per step.

On a GPU the work is the device's kernels, copies and memsets; each is put under a kind by the host operator that
launched it and that operator's enclosing annotations (``Optimizer.step#...``, ``FSDP::...``), else by its name:

* ``matmul``: GEMMs (launched by aten::mm / addmm / bmm, or named gemm, cutlass, nvjet, xmma, wgmma);
* ``attention``: flex attention's (or flash / SDPA) kernels, forward and backward;
* ``elementwise``: norms, activations, RoPE, residual adds, casts: Inductor's fused ``triton_poi/red/per``
  kernels, Liger's, and eager mode's element-wise and reduction kernels;
* ``optimizer``: AdamW (under ``Optimizer.step``) and gradient clipping (foreach kernels outside FSDP);
* ``fsdp``: FSDP2's gathers, reduce-scatters and their copy-in / copy-out, NCCL, memcpy and memset;
* ``other``: the rest (embedding lookups, indexing, the BlockMask's construction, the loss).

``wall`` runs from the first device event to the last, ``busy`` is the union of the events' intervals (all
streams), ``idle = wall - busy`` is the time the device ran nothing (the host's gaps between kernels), and
``overlap = sum(kinds) - busy`` is the work that ran beside other work (on FSDP's own streams). On a CPU trace
(no device events) the same is done with the host's innermost operators.

Run: python bench/gpu_profile.py TRACE.json.gz
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

KINDS = ("matmul", "attention", "elementwise", "optimizer", "fsdp", "other")
DEVICE = ("kernel", "gpu_memcpy", "gpu_memset")
HOST = ("cpu_op", "user_annotation")
MATMUL_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear",
              "aten::_scaled_mm"}  # fmt: skip
MATMUL = re.compile(r"gemm|cutlass|nvjet|xmma|wgmma|cublas|^triton_tem_fused_(addmm|mm|bmm)")
ATTENTION = re.compile(r"flex|flash|fmha|attention|sdpa")
FUSED = re.compile(r"^triton_(poi|red|per)_")
COPIES = re.compile(r"nccl|memcpy|memset")
ELEMENTWISE = re.compile(r"elementwise|reduce_kernel|norm|silu|swiglu|rope|softmax|catarray|^aten::(mul|add|sub|div|"
                         r"rsqrt|pow|mean|sum|silu|neg|cat|exp|sigmoid|_softmax|where|masked_fill|copy_|_to_copy|"
                         r"fill_|zero_|clone|clamp)")  # fmt: skip


def load(path: str | Path) -> list[dict]:
    with gzip.open(path, "rt") if str(path).endswith(".gz") else open(path) as f:  # noqa: SIM115
        return json.load(f)["traceEvents"]


def kind(name: str, chain: list[str]) -> str:
    """The kind of one piece of work: ``name`` (a kernel's, or a host operator's), ``chain`` the host operators
    and annotations around its launch, innermost first."""
    low = name.lower()
    if any(c.startswith("Optimizer.") for c in chain):
        return "optimizer"
    if any(c.startswith("FSDP::") for c in chain) or COPIES.search(low):
        return "fsdp"
    if ATTENTION.search(low) or (chain and ATTENTION.search(chain[0].lower())):
        return "attention"
    if FUSED.match(low):
        return "elementwise"
    if MATMUL.search(low) or name in MATMUL_OPS or (chain and chain[0] in MATMUL_OPS):
        return "matmul"
    if "foreach" in low or "multi_tensor" in low or any(c.startswith("aten::_foreach") for c in chain):
        return "optimizer"
    if ELEMENTWISE.search(low) or (chain and ELEMENTWISE.search(chain[0].lower())):
        return "elementwise"
    return "other"


def _host_tree(events: list[dict]) -> tuple[list[int], list[bool]]:
    """Each host event's enclosing event (-1 for none) and whether a host operator runs inside it, by the nesting
    of their times on each thread."""
    parent, has_op = [-1] * len(events), [False] * len(events)
    threads = defaultdict(list)
    for i, e in enumerate(events):
        threads[(e.get("pid"), e.get("tid"))].append(i)
    for members in threads.values():
        members.sort(key=lambda i: (events[i]["ts"], -events[i]["dur"]))
        stack: list[int] = []
        for i in members:
            start = events[i]["ts"]
            while stack and events[stack[-1]]["ts"] + events[stack[-1]]["dur"] <= start:
                stack.pop()
            if stack:
                parent[i] = stack[-1]
                has_op[stack[-1]] |= events[i].get("cat") == "cpu_op"
            stack.append(i)
    return parent, has_op


def _union(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def summarise(events: list[dict], top: int = 12) -> dict:
    """Per traced step, in milliseconds: wall, busy, idle, overlap, each kind's time and share of the wall, and
    the ``top`` kernels (or host operators) by time."""
    host = [e for e in events if e.get("ph") == "X" and e.get("cat") in HOST]
    parent, has_op = _host_tree(host)

    def chain(i: int) -> list[str]:
        names = []
        while i >= 0:
            names.append(host[i]["name"])
            i = parent[i]
        return names

    device = [e for e in events if e.get("ph") == "X" and e.get("cat") in DEVICE]
    if device:
        by_id = {e["args"]["External id"]: i for i, e in enumerate(host) if "External id" in e.get("args", {})}
        work = [(e, chain(by_id[e["args"]["External id"]]) if e.get("args", {}).get("External id") in by_id else [])
                for e in device]  # fmt: skip
    else:  # a CPU run: the innermost operators are the work
        work = [(host[i], chain(parent[i])) for i, e in enumerate(host) if e["cat"] == "cpu_op" and not has_op[i]]
    steps = max(1, sum(1 for e in host if e["name"].startswith("ProfilerStep#")))
    spans = [(e["ts"], e["ts"] + e["dur"]) for e, _ in work]
    wall = max(b for _, b in spans) - min(a for a, _ in spans) if spans else 0.0
    busy = _union(spans)
    kinds, names = dict.fromkeys(KINDS, 0.0), defaultdict(lambda: [0.0, 0, ""])
    for e, around in work:
        k = kind(e["name"], around)
        kinds[k] += e["dur"]
        entry = names[e["name"]]
        entry[0] += e["dur"]
        entry[1] += 1
        entry[2] = k
    ms = 1e-3 / steps  # microseconds in the trace, per step
    heaviest = sorted(names.items(), key=lambda item: -item[1][0])[:top]
    return {"work": "device" if device else "host", "steps": steps, "events": len(work), "wall_ms": wall * ms,
            "busy_ms": busy * ms, "idle_ms": (wall - busy) * ms, "overlap_ms": (sum(kinds.values()) - busy) * ms,
            "kinds": {k: {"ms": v * ms, "share": v / wall if wall else 0.0} for k, v in kinds.items()},
            "top": [{"name": n, "kind": k, "ms": t * ms, "calls": c / steps} for n, (t, c, k) in heaviest]}  # fmt: skip


def table(summary: dict) -> list[str]:
    s = summary
    lines = [f"{s['work']} time per step over {s['steps']} traced step(s): wall {s['wall_ms']:.1f} ms, busy "
             f"{s['busy_ms']:.1f} ms, idle {s['idle_ms']:.1f} ms ({s['idle_ms'] / max(s['wall_ms'], 1e-9):.1%}), "
             f"overlapping work {s['overlap_ms']:.1f} ms", f"{'kind':<12} {'ms/step':>9} {'of wall':>8}"]  # fmt: skip
    lines += [f"{k:<12} {v['ms']:9.1f} {v['share']:8.1%}" for k, v in s["kinds"].items()]
    lines.append(f"{'idle':<12} {s['idle_ms']:9.1f} {s['idle_ms'] / max(s['wall_ms'], 1e-9):8.1%}")
    lines += ["", f"{'heaviest':<70} {'kind':<12} {'ms/step':>8} {'calls':>7}"]
    lines += [f"{t['name'][:70]:<70} {t['kind']:<12} {t['ms']:8.2f} {t['calls']:7.0f}" for t in s["top"]]
    return lines


if __name__ == "__main__":
    print("\n".join(table(summarise(load(sys.argv[1])))))
