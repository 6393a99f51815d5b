"""One source for every default: the config schema, the two config files and the library agree."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from spinefx import settings
from spinefx.demo.cohort import write_demo_cohort
from spinefx.evaluate import merge, stats
from spinefx.imaging.patches import extract_patches
from spinefx.imaging.register import register_t1_to_t2
from spinefx.learn.augment import augment_patch_file
from spinefx.learn.folds import assign_folds
from spinefx.learn.train import TrainConfig

REPO = Path(__file__).resolve().parents[1]
DEMO = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
PAPER = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
# Where paper.yaml deliberately differs from the schema default, and why (config/README.md shows it).
PAPER_DIFFERS: dict[str, str] = {}

# Library functions whose keyword defaults stand for a block of the config.
LIBRARY = [
    (write_demo_cohort, "demo"),
    (register_t1_to_t2, "registration"),
    (extract_patches, "patches"),
    (augment_patch_file, "augment"),
    (assign_folds, "folds"),
    (merge.merge_predictions, "merge"),
    (stats.diagnostic_table, "stats"),
    (stats.mcnemar_pairs, "stats"),
    (stats.auc_ci, "stats"),
    (stats.feature_model_cv, "stats"),
]


def _plain(value):
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def test_both_config_files_validate_against_the_schema() -> None:
    for config in (DEMO, PAPER):
        jsonschema.validate(config, settings.schema())


def test_config_yaml_holds_only_what_the_demo_changes() -> None:
    defaults = settings.flatten(settings.defaults())
    same = {k: v for k, v in settings.flatten(DEMO).items() if k in defaults and _plain(v) == defaults[k]}
    assert not same, f"config/config.yaml repeats schema defaults: {same}"


def test_paper_yaml_states_every_key_and_agrees_with_the_defaults() -> None:
    defaults = settings.flatten(settings.defaults())
    paper = settings.flatten(PAPER)
    missing = sorted(set(defaults) - set(paper))
    assert not missing, f"config/paper.yaml must state every key on its own; missing {missing}"
    differ = {k for k in defaults if _plain(paper[k]) != defaults[k]}
    assert differ == set(PAPER_DIFFERS), differ ^ set(PAPER_DIFFERS)


def test_train_config_defaults_are_the_schema_defaults() -> None:
    cfg = TrainConfig()
    train = settings.section_defaults("train")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert fields == set(train), fields ^ set(train)
    assert {k: _plain(getattr(cfg, k)) for k in fields} == train


@pytest.mark.parametrize("func, section", LIBRARY, ids=lambda x: getattr(x, "__name__", x))
def test_library_keyword_defaults_agree_with_the_schema(func, section) -> None:
    block = settings.section_defaults(section)
    params = inspect.signature(func).parameters
    checked = {
        n: p.default for n, p in params.items() if n in block and p.default is not inspect.Parameter.empty
    }
    disagree = {n: (v, block[n]) for n, v in checked.items() if _plain(v) != _plain(block[n])}
    assert not disagree, f"{func.__name__}: library default vs schema default {disagree}"


def test_a_disagreeing_default_is_caught() -> None:
    """The comparison above is not vacuous: a changed default would show."""
    block = settings.section_defaults("registration")
    assert _plain((4, 2, 1)) == block["shrink_factors"] and _plain((4, 2)) != block["shrink_factors"]


def test_config_readme_is_generated_from_the_schema() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "config_readme.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    text = (REPO / "config" / "README.md").read_text()
    for key in settings.flatten(settings.defaults()):
        assert f"`{key}`" in text, key
