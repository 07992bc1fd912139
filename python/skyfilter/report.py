"""Plain-text summary tables of the contaminate, dedup and select reports, for the terminal."""

from __future__ import annotations

import json

from skyfilter import select
from skyfilter.contaminate import ContaminationReport
from skyfilter.convert import ConvertReport
from skyfilter.dedup import REASONS, DedupReport

__all__ = ["format_summary", "format_dedup_summary", "format_select_summary"]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Lines of a table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def format_summary(report: ContaminationReport) -> str:
    """The summary printed at the end of ``skyfilter contaminate``."""
    out = [f"skyfilter contaminate: {report.method['description']}", ""]
    rows = [
        [src, str(c["rows"]), str(c["flagged"]), _pct(c["flagged"], c["rows"])] for src, c in report.per_source.items()
    ]
    if report.bad_rows:  # so that the rows column adds up to the total
        rows.append(["bad rows (set apart)", str(report.bad_rows), "", ""])
    rows.append(["total", str(report.rows), str(report.flagged), _pct(report.flagged, report.rows)])
    out += _table(["source", "rows", "flagged", "flagged %"], rows)
    out.append(f"({report.rows_without_ngrams} rows have no text or fewer tokens than n and cannot match an n-gram)")
    out += _bad_rows(report.bad_rows)
    out.append("")
    counts = ("prompts", "prompts_too_short", "prompts_hit", "flagged_rows")
    bench_rows = []
    for name, b in report.benchmarks.items():
        bench_rows.append([name, "(all)", *(str(b[c]) for c in counts)])
        bench_rows += [["", subset, *(str(s[c]) for c in counts)] for subset, s in b.get("per_subset", {}).items()]
    out += _table(["benchmark", "subset", "prompts", "too short", "prompts hit", "flagged rows"], bench_rows)
    short = sum(b["prompts_too_short"] for b in report.benchmarks.values())
    if short and report.method.get("match_short"):
        out.append(f"({short} benchmark prompt(s) have no text or fewer tokens than n: those with text are matched "
                   "whole, --match-short)")  # fmt: skip
    elif short:
        out.append(f"({short} benchmark prompt(s) have no text or fewer tokens than n: no n-gram can match them, not "
                   "even in a copy; --match-short matches them whole)")  # fmt: skip
    if report.top_matched_ngrams:
        out += ["", "most frequent matched n-grams (rows): generic phrases here are likely false positives"]
        out += [f"  {t['rows']:>6}  {t['ngram']}" for t in report.top_matched_ngrams[:10]]
    if report.ignored_common_ngrams:
        out += ["", f"ignored {len(report.ignored_common_ngrams)} common n-gram(s) (--ignore-common):"]
        out += [f"  {t['rows']:>6}  {t['ngram']}" for t in report.ignored_common_ngrams[:10]]
    return "\n".join(out + _written(report.outputs))


def format_dedup_summary(report: DedupReport) -> str:
    """The summary printed at the end of ``skyfilter dedup``."""
    m = report.method
    if m["near"]:
        near = f"near duplicates at Jaccard >= {m['threshold']:g} ({m['num_perm']} permutations, "
        near += f"{m['shingle']}-word shingles, {m['bands']} bands x {m['rows_per_band']} rows, "
        near += f"{m['verify']} verification)"
    else:
        near = "no near-duplicate pass"
    keep = f"max {m['score_column']}" if m["score_column"] else "first"
    out = [f"skyfilter dedup: key {m['key']}, keep {keep}, {near}", ""]
    rows = [[src, *(str(c[r]) for r in REASONS)] for src, c in report.per_source.items()]
    rows.append(["total", str(report.kept), *(str(report.dropped[r]) for r in REASONS[1:])])
    out += _table(["source", *REASONS], rows)
    clusters = report.clusters
    out.append(
        f"({report.conflicting_rows} rows in conflicting groups; {clusters['with_several_rows']} clusters of several "
        f"rows, the largest {clusters['largest']})"
    )
    out += _bad_rows(report.bad_rows)
    return "\n".join(out + _written(report.outputs))


def _bad_rows(count: int) -> list[str]:
    """The line that counts the rows set apart as unreadable (none when there are none)."""
    return [f"({count} bad row(s) could not be read and were set apart: see the bad-rows file)"] if count else []


def _written(outputs: dict[str, str | None]) -> list[str]:
    written = [f"{k} -> {v}" for k, v in outputs.items() if v]
    return ["", "wrote " + ", ".join(written)] if written else []


def format_select_summary(report: select.SelectReport) -> str:
    """The summary printed at the end of ``skyfilter select``."""
    out = [f"skyfilter select: {report.method['description']}", ""]
    reasons = [r for r in select.REASONS[1:] if report.dropped[r]]
    ranked = report.method["fractions"] or report.method["default_fraction"] is not None
    header = ["group", "rows", "kept", *reasons] + (["fraction", "lowest kept"] if ranked else [])
    rows = []
    for name, g in report.per_group.items():
        row = [name, str(g["rows"]), str(g["kept"]), *(str(g["dropped"].get(r, 0)) for r in reasons)]
        if ranked:
            lowest = g["lowest_kept_score"]
            row += [f"{g['fraction']:g}", "-" if lowest is None else f"{lowest:.6g}"]
        rows.append(row)
    if len(rows) > 1:
        total = ["total", str(report.rows), str(report.kept), *(str(report.dropped[r]) for r in reasons)]
        rows.append(total + (["", ""] if ranked else []))
    out += _table(header, rows)
    out += _bad_rows(report.bad_rows)
    return "\n".join(out + _written(report.outputs))


def format_convert_summary(report: ConvertReport) -> str:
    """The summary printed at the end of ``skyfilter convert``."""
    layouts = "; ".join(f"{name} (layout {layout})" for name, layout in report.layouts.items())
    out = [f"skyfilter convert: {layouts}: {report.rows:,} rows -> {report.pairs:,} pairs"]
    if report.without_answer:
        out.append(f"{report.without_answer:,} pair(s) have a side without an answer (written; training drops them "
                   "as no_answer)")  # fmt: skip
    if report.blank_answer:
        out.append(f"{report.blank_answer:,} pair(s) have a blank answer (written; training drops them as "
                   "empty_answer)")  # fmt: skip
    if report.without_prompt:
        out.append(f"{report.without_prompt:,} pair(s) have no prompt text (null, empty or blank; written as "
                   "answers alone)")  # fmt: skip
    if report.unknown_role:
        roles = ", ".join(json.dumps(role, ensure_ascii=False) for role in report.unknown_roles)
        out.append(f"{report.unknown_role:,} pair(s) have a turn of a role chat templates do not know ({roles}; "
                   "written as they are)")  # fmt: skip
    return "\n".join(out + _bad_rows(report.bad_rows) + _written(report.outputs))
