"""Recipe files: the shipped ones load; every mistake is an error that names the file and line."""

from __future__ import annotations

import pytest
from skyfilter.recipe import RecipeError, load_recipe, parse_recipe, shipped_recipes


def test_shipped_recipes_load():
    assert shipped_recipes() == ["skywork-80k-v0.1", "skywork-80k-v0.2"]
    v1, v2 = load_recipe("skywork-80k-v0.1"), load_recipe("skywork-80k-v0.2")
    assert [s.adapter for s in v2.sources] == ["helpsteer2", "offsetbias", "wildguardmix", "magpie-ultra",
                                               "magpie-dpo", "magpie-dpo", "magpie-dpo"]  # fmt: skip
    assert v2.magpie.offsets == {"Magpie-Air": -0.10, "Magpie-Pro": -0.05, "Magpie-Pro-3.1": 0.0, "Magpie-Ultra": 0.0}
    assert v2.magpie.fractions == {"Math": 0.3, "Coding & Debugging": 0.3} and v2.magpie.default_fraction == 0.1
    assert v2.source("WildGuardMix").config == "wildguardtrain" and v2.wildguardmix.reading == "adversarial"
    assert v1.decontaminate is None and v2.decontaminate.sources == ("Magpie-Ultra",)
    assert v2.decontaminate.bench == ("rewardbench",) and v2.decontaminate.preset == "skywork"


BASE = """name = "mine"

[[sources]]
name = "A"
adapter = "offsetbias"
dataset = "a.parquet"

[[sources]]
name = "M"
adapter = "magpie-dpo"
dataset = "m.parquet"
"""
WILD = '[[sources]]\nname = "W"\nadapter = "wildguardmix"\ndataset = "w.parquet"\n'
ULTRA = '[[sources]]\nname = "U"\nadapter = "magpie-ultra"\ndataset = "u.parquet"\n\n'


def error(text: str) -> str:
    with pytest.raises(RecipeError) as e:
        parse_recipe(text, "mine.toml")
    return str(e.value)


def test_a_copied_recipe_can_change_a_quota_and_add_a_source(tmp_path):
    text = load_recipe("skywork-80k-v0.2").text.replace('"Math" = 0.3', '"Math" = 0.5')
    text += '\n[[sources]]\nname = "Extra"\nadapter = "offsetbias"\ndataset = "extra.jsonl"\n'
    path = tmp_path / "mine.toml"
    path.write_text(text)
    recipe = load_recipe(path)
    assert recipe.magpie.fractions["Math"] == 0.5 and recipe.sources[-1].name == "Extra"


@pytest.mark.parametrize(
    "extra, fragments",
    [
        ('colour = "red"\n', ["mine.toml:1", "colour", "unknown key"]),  # top-level keys come first in TOML
        ('[dedup]\nkey = "pair"\nnearr = true\n', ["mine.toml:15", "[dedup]", "nearr", "allowed: conflicts, key"]),
        ('[select.magpie]\nsources = ["M"]\ndefault_fraction = "ten"\n', ["mine.toml:15", "default_fraction", "float"]),
        ('[select.magpie]\nsources = ["M"]\ndefault_fraction = 1.5\n', ["within [0, 1]"]),
        ('[select.magpie]\nsources = ["N"]\n', ["mine.toml:14", "no source named 'N'"]),
        ('[select.magpie]\nsources = ["M"]\noffsets = { "Other" = 0.1 }\n', ["mine.toml:15", "not one of ['M']"]),
        (
            '[select.magpie]\nsources = ["M"]\n\n[select.magpie.fractions]\n"math" = 0.3\n',
            ["mine.toml:17", "math: not one of", "not one of", "Math"],
        ),
        (
            '[select.magpie]\nsources = ["M"]\n\n[select.magpie.fractions]\n"Math" = 1.5\n',
            ["mine.toml:17", "within [0, 1], got 1.5"],
        ),
        ('[select.magpie]\nsources = ["A"]\n', ["mine.toml:14", "'A' does not use a magpie-dpo or magpie-ultra"]),
        ('[select.wildguardmix]\nsources = ["M"]\n', ["'M' does not use a wildguardmix adapter"]),
        ('[output]\nformat = "csv"\n', ["mine.toml:14", "must be one of release, pairs"]),
        ('[outputs]\nformat = "pairs"\n', ["mine.toml:13", "outputs", "unknown key"]),
        ('[select.wildguardmix]\nsources = ["W"]\nreading = "rm-agreement"\n', ["needs `scores`", "source_row"]),
        ('[select.wildguardmix]\nsources = ["W"]\nreading = "guess"\n', ["must be one of adversarial"]),
        ('[decontaminate]\npreset = "nope"\n', ["unknown preset 'nope'"]),
        ('[select.other]\nsources = ["A"]\n', ["[select]", "other", "unknown key"]),
    ],
)
def test_mistakes_name_the_line(extra, fragments):
    text = BASE + "\n" + extra if not extra.startswith("colour") else extra + BASE
    if "wildguardmix" in extra:
        text = BASE + "\n" + WILD + "\n" + extra
    message = error(text)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_source_mistakes():
    assert "mine.toml:5" in error(BASE.replace('adapter = "offsetbias"', 'adapter = "nope"'))
    assert "unknown adapter 'nope'" in error(BASE.replace('adapter = "offsetbias"', 'adapter = "nope"'))
    assert "two sources are named 'A'" in error(BASE.replace('name = "M"', 'name = "A"'))
    assert "needs 'dataset'" in error(BASE.replace('dataset = "m.parquet"\n', ""))
    assert "mine.toml:4" in error(BASE.replace('name = "A"', "name = 3"))
    assert "not valid TOML" in error(BASE + "[dedup\n")
    assert "needs 'sources'" in error('name = "x"\n')
    assert "each source is a [[sources]] table" in error('name = "x"\nsources = [1]\n')
    missing = error(BASE + "\n" + ULTRA + '[select.magpie]\nsources = ["M", "U"]\noffsets = { "M" = 0.0 }\n')
    assert "no offset for generator(s) ['U']" in missing


def test_unknown_recipe_name():
    with pytest.raises(RecipeError, match="nor a shipped recipe"):
        load_recipe("skywork-80k-v9")
    with pytest.raises(RecipeError, match="no such recipe file"):
        load_recipe("missing.toml")
