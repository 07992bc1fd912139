"""The report of a curation run: ``report.md`` (the paper's Table 1 for the output, the Magpie category mix, pairs
per source through the steps, drop reasons) and two PNG plots:

* ``magpie_scores.png``: the mean ArmoRM score per Magpie generator before and after its offset, with each
  category's cut line (the lowest kept adjusted score), as in the paper's Figure 2;
* ``pairs_per_step.png``: pairs per source after each step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["write_report", "table_one"]


def _lengths(conversations: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(messages, characters) per row."""
    if isinstance(conversations, pa.ChunkedArray):
        conversations = conversations.combine_chunks()
    count = pc.list_value_length(conversations).fill_null(0).to_numpy(zero_copy_only=False)
    chars = pc.utf8_length(pc.struct_field(conversations.values, "content")).fill_null(0).to_numpy(zero_copy_only=False)
    bounds = conversations.offsets.to_numpy()
    totals = np.add.reduceat(np.append(chars, 0), bounds[:-1]) if len(chars) else np.zeros(len(count))
    return count, np.where(count > 0, totals, 0)


def table_one(pairs: pa.Table) -> list[dict]:
    """Per source (and in total): pairs, average turns (user-assistant exchanges, answer included), and average
    characters of the prompt turns and of the chosen and rejected answers."""
    prompt_turns, prompt_chars = _lengths(pairs.column("prompt"))
    _, chosen_chars = _lengths(pairs.column("chosen"))
    _, rejected_chars = _lengths(pairs.column("rejected"))
    sources = pairs.column("source").to_numpy(zero_copy_only=False)
    rows = []
    for name in [*dict.fromkeys(sources.tolist()), None]:
        mine = np.ones(len(sources), bool) if name is None else sources == name
        n = int(mine.sum())
        rows.append({
            "source": "total" if name is None else name,
            "pairs": n,
            "avg_turns": float((prompt_turns[mine] + 1).mean() / 2) if n else 0.0,
            "avg_prompt_chars": float(prompt_chars[mine].mean()) if n else 0.0,
            "avg_chosen_chars": float(chosen_chars[mine].mean()) if n else 0.0,
            "avg_rejected_chars": float(rejected_chars[mine].mean()) if n else 0.0,
        })  # fmt: skip
    return rows


def _markdown(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    head = "| " + " | ".join(title for _, title in columns) + " |"
    numeric = [bool(rows) and all(isinstance(r[k], int | float) for r in rows) for k, _ in columns]
    rule = "|" + "|".join("---:" if n else "---" for n in numeric) + "|"
    body = []
    for row in rows:
        cells = []
        for key, _ in columns:
            v = row[key]
            cells.append(f"{v:,.1f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v))
        body.append("| " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *body])


def _magpie_plot(path: Path, pool, manifest, recipe) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rule = recipe.magpie
    in_select = np.isin(pool.sources, list(rule.sources)) & (pool.step != "dedup")  # the rows the rule ranked
    pairs = pool.pairs
    score = pairs.column("score").to_numpy(zero_copy_only=False)
    generator = pairs.column("generator").to_numpy(zero_copy_only=False)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    finite = in_select & np.isfinite(score)
    offsets = np.array([rule.offsets.get(g, 0.0) for g in generator.tolist()]) if len(generator) else np.zeros(0)
    both = np.concatenate([score[finite], (score + offsets)[finite]])  # one axis for both panels
    edges = np.linspace(both.min(), both.max(), 60) if len(both) and both.max() > both.min() else np.linspace(0, 1, 60)
    for name in dict.fromkeys(generator[in_select].tolist()):
        mine = finite & (generator == name)
        offset = rule.offsets.get(name, 0.0)
        axes[0].hist(score[mine], bins=edges, histtype="step", label=name, linewidth=1.5)
        axes[1].hist(score[mine] + offset, bins=edges, histtype="step", label=f"{name} ({offset:+.2f})", linewidth=1.5)
    select = next((s for s in manifest.steps if s["step"] == "select"), {})
    categories = select.get("magpie", {}).get("per_category", {})
    shown = sorted(categories.items(), key=lambda kv: -kv[1]["rows"])[:4]
    for i, (name, entry) in enumerate(shown):
        cut = entry.get("lowest_kept_score")
        if cut is not None:
            axes[1].axvline(cut, color=f"C{(i + 5) % 10}", linestyle="--", linewidth=1,
                            label=f"cut: {name} (top {entry['fraction']:.0%})")  # fmt: skip
    axes[0].set_title("Mean ArmoRM score per generator")
    axes[1].set_title("After the generator offsets, with category cut lines")
    for ax in axes:
        ax.set_xlabel("score")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("prompts")
    fig.suptitle(f"{recipe.name}: Magpie selection")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _steps_plot(path: Path, manifest, names: list[str], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [s for s in manifest.steps if s["step"] != "convert"]
    convert = manifest.step("convert")["sources"]
    stages = [("convert", {n: convert[n]["pairs"] for n in names})]
    stages += [(s["step"], {n: s["sources"][n]["out"] for n in names}) for s in steps]
    fig, ax = plt.subplots(figsize=(max(8, 1.4 * len(names)), 4.8))
    width = 0.8 / len(stages)
    x = np.arange(len(names))
    for i, (stage, counts) in enumerate(stages):
        bars = ax.bar(x + i * width, [counts[n] for n in names], width, label=f"after {stage}")
        ax.bar_label(bars, fontsize=7, rotation=90, padding=2)
    ax.set_xticks(x + width * (len(stages) - 1) / 2, names, rotation=20, ha="right")
    ax.set_ylabel("pairs")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.margins(y=0.15)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(folder: Path, kept: pa.Table, pool, manifest, recipe, plots: bool = True) -> list[str]:
    """Writes report.md (and the plots) into ``folder``; returns the file names."""
    names = [s.name for s in recipe.sources]
    lines = [f"# {recipe.name}" + (" (synthetic sample)" if manifest.sample else ""), ""]
    if recipe.description:
        lines += [recipe.description, ""]
    lines += ["## The curated set (the paper's Table 1)", "",
              "Turns are user-assistant exchanges, answer included; lengths are characters.", ""]  # fmt: skip
    lines.append(_markdown(table_one(kept), [("source", "source"), ("pairs", "pairs"), ("avg_turns", "avg turns"),
                                             ("avg_prompt_chars", "avg prompt"), ("avg_chosen_chars", "avg chosen"),
                                             ("avg_rejected_chars", "avg rejected")]))  # fmt: skip
    if recipe.magpie is not None:
        magpie = kept.filter(pc.is_in(kept.column("source"), pa.array(list(recipe.magpie.sources))))
        cats = magpie.column("category").to_pylist()
        mix = sorted(((c, cats.count(c)) for c in set(cats)), key=lambda kv: (-kv[1], str(kv[0])))
        lines += ["", f"## Magpie category mix ({len(cats):,} pairs)", ""]
        lines.append(_markdown([{"category": str(c), "pairs": n, "share": 100.0 * n / max(len(cats), 1)}
                                for c, n in mix], [("category", "category"), ("pairs", "pairs"),
                                                   ("share", "share %")]))  # fmt: skip
    convert = manifest.step("convert")["sources"]
    rows = []
    for n in names:
        row = {"source": n, "rows": convert[n]["in"], "converted": convert[n]["pairs"]}
        row |= {s["step"]: s["sources"][n]["out"] for s in manifest.steps if s["step"] != "convert"}
        rows.append(row)
    step_names = [s["step"] for s in manifest.steps if s["step"] != "convert"]
    lines += ["", "## Pairs per source through the steps", ""]
    bad = [("bad_rows", "bad rows")] if any(convert[n].get("bad_rows") for n in names) else []
    for row in rows:
        row["bad_rows"] = convert[row["source"]].get("bad_rows", 0)
    lines.append(_markdown(rows, [("source", "source"), ("rows", "input rows"), *bad, ("converted", "pairs"),
                                  *[(s, f"after {s}") for s in step_names]]))  # fmt: skip
    lines += ["", "## Dropped, per step and reason", ""]
    drops = []
    for step in manifest.steps:
        for source, entry in step["sources"].items():
            for reason, count in entry["dropped"].items():
                drops.append({"step": step["step"], "source": source, "reason": reason, "count": count})
    lines.append(_markdown(drops, [("step", "step"), ("source", "source"), ("reason", "reason"), ("count", "rows")])
                 if drops else "Nothing was dropped.")  # fmt: skip
    lines += ["", "Every dropped row is in `dropped.parquet` with its step and reason; `manifest.json` has the counts."]
    files = ["report.md"]
    if plots:
        _steps_plot(folder / "pairs_per_step.png", manifest, names, f"{recipe.name}: pairs per source")
        files.append("pairs_per_step.png")
        lines += ["", "![pairs per step](pairs_per_step.png)"]
        if recipe.magpie is not None:
            _magpie_plot(folder / "magpie_scores.png", pool, manifest, recipe)
            files.append("magpie_scores.png")
            lines += ["", "![Magpie scores](magpie_scores.png)"]
    (folder / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return files
