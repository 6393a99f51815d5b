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
# What the paper itself (Yeh et al. 2022, Methods) states for a key. config/paper.yaml must say the same,
# or the key's `paper_differs:` in the schema must say why not.
PAPER_STATES = {
    "demo.n_patients": 190,
    "patches.size": 64,  # "resized to 64 x 64 by linear interpolation"
    "patches.centre_offsets": [-1, 0, 1],  # "the identified slice with its two neighboring slices"
    "patches.neighbours": 1,  # "the total number of input channel was six"
    "augment.copies": {"benign": 20, "malignant": 40},
    "folds.k": 10,
    "train.arch": "resnet50",
    "train.epochs": 100,
    "train.batch_size": 32,
    "train.lr": 0.0001,
    "train.require_pretrained": True,  # "Parameters were initialized using ImageNet"
    "train.bn_recalibrate": False,  # not in the paper: off
    "merge.method": "max",  # "the highest probability of malignancy among all slices"
    "merge.threshold": 0.5,
}
# Settings the paper's protocol needs but the paper gives no value for (or describes in a way spinefx
# had to read): each must carry `paper_differs:`, and only these and the keys above that differ may.
PAPER_OPEN = {
    "cohort",
    "registration.transform",
    "augment.rotation_deg",
    "augment.translation_px",
    "augment.scale_range",
    "augment.dtype",
    "folds.k",
    "train.arch",
    "train.betas",
    "train.weight_decay",
    "train.patience",
    "train.val_fraction",
    "train.dropout",
    "train.amp",
}

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


def _undocumented_differences(paper: dict) -> set[str]:
    """Keys where ``paper`` (a flattened paper.yaml) departs from what the paper states, without a
    ``paper_differs:`` saying why."""
    documented = set(settings.paper_differences())
    return {k for k, v in PAPER_STATES.items() if _plain(paper[k]) != v and k not in documented}


def test_paper_yaml_says_what_the_paper_says_or_the_schema_says_why_not() -> None:
    paper = settings.flatten(PAPER)
    assert not _undocumented_differences(paper)
    assert paper["train.betas"][0] == 0.5  # the paper's "momentum term beta to 0.5"
    # the check is not vacuous: a paper.yaml with another learning rate would be caught
    assert _undocumented_differences(dict(paper, **{"train.lr": 0.001})) == {"train.lr"}


def test_the_list_of_differences_from_the_paper_cannot_go_stale() -> None:
    documented = settings.paper_differences()
    paper = settings.flatten(PAPER)
    differing = {k for k, v in PAPER_STATES.items() if _plain(paper[k]) != v}
    assert set(documented) == PAPER_OPEN | differing, set(documented) ^ (PAPER_OPEN | differing)
    known = set(settings.flatten(settings.defaults())) | set(settings.schema()["properties"])
    assert set(documented) <= known
    assert all(len(why) > 20 for why in documented.values())
    text = (REPO / "config" / "README.md").read_text()
    section = text.split("## Where the protocol differs from the paper", 1)[1]
    for key, why in documented.items():
        assert f"| `{key}` |" in section and why in section, key
