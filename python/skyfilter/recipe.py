"""Curation recipes: which sources, how each is converted, and the dedup, selection and decontamination steps,
as a TOML file that a user can copy and change.

The package ships ``skywork-80k-v0.1`` and ``skywork-80k-v0.2`` (``skyfilter/recipes/*.toml``); a recipe argument
is a shipped name or a path. Every key is checked: an unknown key, or a value of the wrong type, is an error that
names the file and line.

Layout (see the shipped files for a complete, commented example)::

    name = "..."                      # required
    description = "..."

    [[sources]]                       # one table per source, in output order
    name = "Magpie-Pro"               # the `source` label of its pairs (unique)
    adapter = "magpie-dpo"            # see skyfilter.adapters.ADAPTERS
    dataset = "Magpie-Align/..."      # a hub id, a local dataset folder (both via datasets), or a file
    split = "train"
    config = "..."                    # optional: the hub config (WildGuardMix: wildguardtrain)
    revision = "..."                  # optional: a hub revision, recorded in the manifest
    generator = "Magpie-Pro"          # optional: the label the Magpie offsets use (default: name)

    [dedup]                           # exact duplicates across all sources (skyfilter dedup)
    key = "pair"                      # or "prompt"
    near = false                      # MinHash near-duplicates as well
    threshold = 0.7
    conflicts = "drop"                # the same pair preferred both ways: drop every copy, or "keep"

    [select.magpie]                   # the Magpie rule: sources pooled, ranked within each category
    sources = [...]
    offsets = { "Magpie-Air" = -0.10 }   # added to the mean ArmoRM score, per generator
    fractions = { "Math" = 0.3 }
    default_fraction = 0.1

    [select.wildguardmix]
    sources = ["WildGuardMix"]
    reading = "adversarial"           # or "rm-agreement", or "both" (the paper's two stages)
    scores = "rm_scores.parquet"      # for rm-agreement: source, source_row, rm_chosen, rm_rejected

    [decontaminate]
    sources = ["Magpie-Ultra"]        # or "all"
    bench = ["rewardbench"]           # hub benchmark names or benchmark files
    preset = "skywork"
    match_short = false               # true: also drop copies of prompts too short for an n-gram

    [output]
    format = "release"                # or "pairs" (prompt apart, scores, category, source_row, ...)

Paths (``dataset``, ``scores``, benchmark files) are relative to the working directory, or with ``--data-dir`` to
that folder, which a relative path cannot climb out of (``..``): a recipe from elsewhere reads only the files given
to it. An absolute path is read where it says (the recipe shows it), and so is a symbolic link in the folder (the
folder's owner made it).

A recipe is data: TOML, parsed and checked key by key, never run.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

__all__ = [
    "RecipeError",
    "SourceSpec",
    "DedupStep",
    "MagpieRule",
    "WildGuardRule",
    "DecontaminateStep",
    "Recipe",
    "load_recipe",
    "parse_recipe",
    "shipped_recipes",
    "in_data_dir",
]

READINGS = ("adversarial", "rm-agreement", "both")
#: ``release``: chosen / rejected conversations and source (the published schema); ``pairs``: the curation
#: table, with the prompt apart and the scores, category, generator, adversarial flag and source row.
OUTPUT_FORMATS = ("release", "pairs")


class RecipeError(ValueError):
    """A recipe file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class SourceSpec:
    """One source: where its rows come from and which adapter converts them."""

    name: str
    adapter: str
    dataset: str
    split: str = "train"
    config: str | None = None
    revision: str | None = None
    generator: str | None = None

    @property
    def generator_label(self) -> str:
        return self.generator or self.name


@dataclass(frozen=True)
class DedupStep:
    key: str = "pair"
    near: bool = False
    threshold: float = 0.7
    conflicts: str = "drop"


@dataclass(frozen=True)
class MagpieRule:
    sources: tuple[str, ...]
    offsets: dict[str, float] = field(default_factory=dict)
    fractions: dict[str, float] = field(default_factory=dict)
    default_fraction: float = 1.0


@dataclass(frozen=True)
class WildGuardRule:
    sources: tuple[str, ...]
    reading: str = "adversarial"
    scores: str | None = None


@dataclass(frozen=True)
class DecontaminateStep:
    sources: tuple[str, ...] | None  # None: all sources
    bench: tuple[str, ...] = ("rewardbench",)
    preset: str = "skywork"
    match_short: bool = False


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    sources: tuple[SourceSpec, ...]
    dedup: DedupStep | None
    magpie: MagpieRule | None
    wildguardmix: WildGuardRule | None
    decontaminate: DecontaminateStep | None
    output: str = "release"
    path: str = ""
    text: str = ""

    def source(self, name: str) -> SourceSpec:
        return next(s for s in self.sources if s.name == name)


# ------------------------------------------------------------------------------------------- parsing


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r'^\s*("[^"]*"|\'[^\']*\'|[A-Za-z0-9_.-]+)\s*=')


def _key_lines(text: str) -> dict[tuple[str, str], int]:
    """Line numbers of ``key = ...`` lines by (table path, key); an array-of-tables entry's path carries its
    index (``sources[2]``). Keys inside inline tables are not located (their parent key's line is used)."""
    lines: dict[tuple[str, str], int] = {}
    counts: dict[str, int] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header:
            name = ".".join(p.strip().strip("\"'") for p in header.group(2).split("."))
            if header.group(1) == "[[":
                counts[name] = counts.get(name, -1) + 1
                name = f"{name}[{counts[name]}]"
            table = name
            lines.setdefault((table, ""), number)
            continue
        key = _KEY.match(line)
        if key:
            lines.setdefault((table, key.group(1).strip("\"'")), number)
    return lines


class _Reader:
    """Typed access to one TOML table that reports the file and line of every mistake. ``fallback`` is the line
    of the key that holds this table, for inline tables (which have no header line)."""

    def __init__(self, where: str, lines: dict[tuple[str, str], int], table: dict, path: str, fallback: int = 0):
        self.where, self.lines, self.table, self.path, self.fallback = where, lines, table, path, fallback
        self.used: set[str] = set()

    def _child(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def number(self, key: str = "") -> int:
        """The line of ``key``: its own, else the header of the table it names, else this table's."""
        return (
            self.lines.get((self.path, key))
            or self.lines.get((self._child(key), ""))
            or self.lines.get((self.path, ""))
            or self.fallback
        )

    def line(self, key: str = "") -> str:
        number = self.number(key)
        return f"{self.where}:{number}" if number else self.where

    def fail(self, key: str, message: str) -> RecipeError:
        label = f"[{self.path}] " if self.path else ""
        return RecipeError(f"{self.line(key)}: {label}{key}: {message}")

    def get(self, key: str, kind: type | tuple, default=None, required: bool = False):
        self.used.add(key)
        if key not in self.table:
            if required:
                raise RecipeError(f"{self.line()}: [{self.path or 'top level'}] needs {key!r}")
            return default
        value = self.table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
            names = " or ".join(k.__name__ for k in kinds)
            raise self.fail(key, f"must be {names}, got {type(value).__name__} {value!r}")
        return value

    def strings(self, key: str, required: bool = False) -> tuple[str, ...] | None:
        values = self.get(key, list, required=required)
        if values is None:
            return None
        if not all(isinstance(v, str) for v in values):
            raise self.fail(key, f"must be a list of strings, got {values!r}")
        return tuple(values)

    def numbers(self, key: str, names: tuple[str, ...] | None = None, within: tuple[float, float] | None = None):
        """A table of names (from ``names``, when given) to finite numbers (``within`` bounds, when given); a
        mistake names the line of the entry where it can."""
        inner = self.sub(key)
        if inner is None:
            return {}
        out = {}
        for name, v in inner.table.items():
            inner.used.add(name)
            if names is not None and name not in names:
                raise inner.fail(name, f"not one of {list(names)} (names are case-sensitive)")
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise inner.fail(name, f"must be a finite number, got {v!r}")
            if within is not None and not within[0] <= v <= within[1]:
                raise inner.fail(name, f"must be within [{within[0]:g}, {within[1]:g}], got {v}")
            out[name] = float(v)
        return out

    def sub(self, key: str) -> _Reader | None:
        value = self.get(key, dict)
        if value is None:
            return None
        return _Reader(self.where, self.lines, value, self._child(key), self.number(key))

    def done(self) -> None:
        unknown = [k for k in self.table if k not in self.used]
        if unknown:
            raise self.fail(unknown[0], f"unknown key; allowed: {', '.join(sorted(self.used))}")


def _fraction(reader: _Reader, key: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise reader.fail(key, f"fractions must be within [0, 1], got {value}")
    return value


def parse_recipe(text: str, where: str = "recipe") -> Recipe:
    """A recipe from TOML text; ``where`` names it in errors."""
    from skyfilter.adapters import ADAPTERS
    from skyfilter.adapters.magpie_dpo import MAGPIE_CATEGORIES
    from skyfilter.contaminate import PRESETS

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{where}: not valid TOML: {e}") from None
    lines = _key_lines(text)
    top = _Reader(where, lines, data, "")
    name = top.get("name", str, required=True)
    description = top.get("description", str, default="")

    entries = top.get("sources", list, required=True)
    sources = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise top.fail("sources", f"each source is a [[sources]] table, got {entry!r}")
        r = _Reader(where, lines, entry, f"sources[{i}]")
        spec = SourceSpec(
            name=r.get("name", str, required=True),
            adapter=r.get("adapter", str, required=True),
            dataset=r.get("dataset", str, required=True),
            split=r.get("split", str, default="train"),
            config=r.get("config", str),
            revision=r.get("revision", str),
            generator=r.get("generator", str),
        )
        if spec.adapter not in ADAPTERS:
            raise r.fail("adapter", f"unknown adapter {spec.adapter!r}; adapters are {', '.join(ADAPTERS)}")
        if any(s.name == spec.name for s in sources):
            raise r.fail("name", f"two sources are named {spec.name!r}")
        r.done()
        sources.append(spec)
    if not sources:
        raise top.fail("sources", "a recipe needs at least one source")
    names = {s.name for s in sources}
    by_name = {s.name: s for s in sources}

    def known(reader: _Reader, key: str, given: tuple[str, ...], adapters: tuple[str, ...] = ()) -> tuple[str, ...]:
        missing = [n for n in given if n not in names]
        if missing:
            raise reader.fail(key, f"no source named {missing[0]!r}; sources are {', '.join(sorted(names))}")
        if adapters and (other := [n for n in given if by_name[n].adapter not in adapters]):
            raise reader.fail(key, f"{other[0]!r} does not use a {' or '.join(adapters)} adapter")
        return given

    dedup = None
    if (r := top.sub("dedup")) is not None:
        dedup = DedupStep(
            key=r.get("key", str, default="pair"),
            near=r.get("near", bool, default=False),
            threshold=r.get("threshold", float, default=0.7),
            conflicts=r.get("conflicts", str, default="drop"),
        )
        if dedup.conflicts not in ("drop", "keep"):
            raise r.fail("conflicts", f"must be 'drop' or 'keep', got {dedup.conflicts!r}")
        if dedup.key not in ("pair", "prompt"):
            raise r.fail("key", f"must be 'pair' or 'prompt', got {dedup.key!r}")
        if not 0.0 < dedup.threshold <= 1.0:
            raise r.fail("threshold", f"must be within (0, 1], got {dedup.threshold}")
        r.done()

    magpie = wildguard = None
    if (select := top.sub("select")) is not None:
        if (r := select.sub("magpie")) is not None:
            chosen = known(r, "sources", r.strings("sources", required=True), ("magpie-dpo", "magpie-ultra"))
            generators = tuple(dict.fromkeys(by_name[n].generator_label for n in chosen))
            magpie = MagpieRule(
                sources=chosen,
                offsets=r.numbers("offsets", names=generators),
                fractions=r.numbers("fractions", names=MAGPIE_CATEGORIES, within=(0.0, 1.0)),
                default_fraction=_fraction(r, "default_fraction", r.get("default_fraction", float, default=1.0)),
            )
            if magpie.offsets and (missing := [g for g in generators if g not in magpie.offsets]):
                raise r.fail("offsets", f"no offset for generator(s) {missing} (0 leaves a generator unchanged)")
            r.done()
        if (r := select.sub("wildguardmix")) is not None:
            wildguard = WildGuardRule(
                sources=known(r, "sources", r.strings("sources", required=True), ("wildguardmix",)),
                reading=r.get("reading", str, default="adversarial"),
                scores=r.get("scores", str),
            )
            if wildguard.reading not in READINGS:
                raise r.fail("reading", f"must be one of {', '.join(READINGS)}, got {wildguard.reading!r}")
            if wildguard.reading != "adversarial" and wildguard.scores is None:
                raise r.fail(
                    "reading",
                    f"{wildguard.reading!r} needs `scores`: a file with source, source_row, rm_chosen and "
                    "rm_rejected (score the pairs with a reward model first)",
                )
            r.done()
        select.done()

    decontaminate = None
    if (r := top.sub("decontaminate")) is not None:
        given = r.get("sources", (list, str), default="all")
        if isinstance(given, str) and given != "all":
            raise r.fail("sources", f"must be a list of source names or 'all', got {given!r}")
        decontaminate = DecontaminateStep(
            sources=None if given == "all" else known(r, "sources", r.strings("sources")),
            bench=r.strings("bench") or ("rewardbench",),
            preset=r.get("preset", str, default="skywork"),
            match_short=r.get("match_short", bool, default=False),
        )
        if decontaminate.preset not in PRESETS:
            raise r.fail("preset", f"unknown preset {decontaminate.preset!r}; presets are {', '.join(PRESETS)}")
        r.done()
    output = "release"
    if (r := top.sub("output")) is not None:
        output = r.get("format", str, default="release")
        if output not in OUTPUT_FORMATS:
            raise r.fail("format", f"must be one of {', '.join(OUTPUT_FORMATS)}, got {output!r}")
        r.done()
    top.done()
    return Recipe(name, description, tuple(sources), dedup, magpie, wildguard, decontaminate, output, where, text)


def in_data_dir(recipe: Recipe, data_dir: Path) -> Recipe:
    """``recipe`` with its relative ``scores`` and benchmark files read from ``data_dir`` (a source's ``dataset`` is
    looked up there by :mod:`skyfilter.curate`; hub benchmark names stay names). A relative path that climbs out of
    ``data_dir`` is a :class:`RecipeError` naming the key and its line."""
    from skyfilter.benchmarks import HUB_BENCHMARKS

    lines = _key_lines(recipe.text)

    def inside(table: str, key: str, value: str) -> str:
        if os.path.isabs(value):
            return value
        if os.path.normpath(value).split(os.sep)[0] == os.pardir:
            raise _Reader(recipe.path or "recipe", lines, {}, table).fail(
                key, f"{value!r} reaches outside --data-dir {data_dir}; put the file in that folder, or give its "
                "absolute path"
            )  # fmt: skip
        return str(data_dir / value)

    for i, spec in enumerate(recipe.sources):
        inside(f"sources[{i}]", "dataset", spec.dataset)
    wildguard, decontaminate = recipe.wildguardmix, recipe.decontaminate
    if wildguard is not None and wildguard.scores is not None:
        wildguard = dataclasses.replace(wildguard, scores=inside("select.wildguardmix", "scores", wildguard.scores))
    if decontaminate is not None:
        bench = tuple(b if b in HUB_BENCHMARKS else inside("decontaminate", "bench", b) for b in decontaminate.bench)
        decontaminate = dataclasses.replace(decontaminate, bench=bench)
    return dataclasses.replace(recipe, wildguardmix=wildguard, decontaminate=decontaminate)


def shipped_recipes() -> list[str]:
    """Names of the recipes that ship with the package."""
    folder = resources.files("skyfilter") / "recipes"
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def load_recipe(recipe: str | Path) -> Recipe:
    """A shipped recipe by name, or a recipe file by path."""
    path = Path(recipe)
    if path.suffix == ".toml" or path.is_file():
        if not path.is_file():
            raise RecipeError(f"{recipe}: no such recipe file")
        return parse_recipe(path.read_text(encoding="utf-8"), str(path))
    shipped = resources.files("skyfilter") / "recipes" / f"{recipe}.toml"
    if not shipped.is_file():
        raise RecipeError(f"{recipe}: not a recipe file, nor a shipped recipe ({', '.join(shipped_recipes())})")
    return parse_recipe(shipped.read_text(encoding="utf-8"), f"{recipe}.toml")
