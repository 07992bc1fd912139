"""A recipe is data (issue 22): TOML, checked key by key, never run; with --data-dir its relative paths (a source's
dataset, WildGuardMix's scores, benchmark files) are read from that folder and cannot climb out of it (``..``): the
refusal is one line naming the recipe, line and key. Absolute paths and hub benchmark names are kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from skyfilter.cli import main
from skyfilter.recipe import RecipeError, in_data_dir, load_recipe, parse_recipe


def recipe_with(tmp_path: Path, dataset: str, scores: str = "scores.parquet", bench: str = "bench.jsonl") -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text(f'name = "r"\n\n[[sources]]\nname = "WildGuardMix"\nadapter = "wildguardmix"\n'
                    f'dataset = "{dataset}"\n\n[select.wildguardmix]\nsources = ["WildGuardMix"]\n'
                    f'reading = "rm-agreement"\nscores = "{scores}"\n\n[decontaminate]\n'
                    f'bench = ["rewardbench", "{bench}"]\n')  # fmt: skip
    return path


@pytest.mark.parametrize(
    ("key", "line", "paths"),
    [
        ("[sources[0]] dataset", 6, {"dataset": "../outside.parquet"}),
        ("[sources[0]] dataset", 6, {"dataset": "inside/../../outside.parquet"}),
        ("[select.wildguardmix] scores", 11, {"dataset": "w.parquet", "scores": "../scores.parquet"}),
        ("[decontaminate] bench", 14, {"dataset": "w.parquet", "bench": "../../bench.jsonl"}),
    ],
)
def test_a_recipe_path_cannot_climb_out_of_the_data_dir(tmp_path, key, line, paths):
    path = recipe_with(tmp_path, **paths)
    value = next(v for v in paths.values() if ".." in v)
    with pytest.raises(RecipeError) as refused:
        in_data_dir(load_recipe(path), tmp_path / "data")
    assert str(refused.value) == (f"{path}:{line}: {key}: {value!r} reaches outside --data-dir {tmp_path / 'data'}; "
                                  "put the file in that folder, or give its absolute path")  # fmt: skip


def test_a_recipe_reads_its_relative_paths_from_the_data_dir(tmp_path):
    data = tmp_path / "data"
    recipe = in_data_dir(load_recipe(recipe_with(tmp_path, "sub/../w.parquet", bench=str(tmp_path / "b.jsonl"))), data)
    assert recipe.wildguardmix.scores == str(data / "scores.parquet")
    assert recipe.decontaminate.bench == ("rewardbench", str(tmp_path / "b.jsonl"))  # names and absolute paths kept


def test_curate_refuses_a_recipe_that_climbs_out_of_the_data_dir(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "outside.parquet").write_bytes(b"PAR1")
    path = recipe_with(tmp_path, "../outside.parquet")
    result = CliRunner().invoke(main, ["curate", "--recipe", str(path), "--data-dir", str(tmp_path / "data"), "--out",
                                       str(tmp_path / "out")])  # fmt: skip
    assert result.exit_code == 1 and not (tmp_path / "out").exists()
    assert result.output.strip().splitlines() == [
        f"Error: {path}:6: [sources[0]] dataset: '../outside.parquet' reaches outside --data-dir {tmp_path / 'data'}; "
        "put the file in that folder, or give its absolute path"
    ]


def test_a_recipe_is_never_run(tmp_path):
    """Python in a recipe is a TOML error, not code: nothing is written."""
    ran = tmp_path / "ran"
    with pytest.raises(RecipeError, match="^recipe: not valid TOML"):
        parse_recipe(f"import os\nos.system('touch {ran}')\n")
    with pytest.raises(RecipeError, match="must be str"):
        parse_recipe(
            f'name = "r"\n[[sources]]\nname = "a"\nadapter = "offsetbias"\ndataset = {{ exec = "touch {ran}" }}\n'
        )
    assert not ran.exists()
