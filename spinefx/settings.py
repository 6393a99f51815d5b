"""The config schema as the one source of every default, and config/README.md rendered from it.

`config.schema.yaml` (beside this module, linked from workflow/schemas/) states each key's type,
default, unit and meaning. Snakemake validates the config against it; the library takes its defaults
from it (``section_defaults``), so a default is written down exactly once.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


@functools.cache
def _schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def schema() -> dict[str, Any]:
    """A copy of the config schema."""
    return copy.deepcopy(_schema())


def _defaults_of(prop: Mapping[str, Any]) -> Any:
    if prop.get("type") == "object" and "properties" in prop and prop.get("default", {}) == {}:
        return {
            key: _defaults_of(sub)
            for key, sub in prop["properties"].items()
            if "default" in sub or sub.get("type") == "object"
        }
    return copy.deepcopy(prop.get("default"))


def defaults() -> dict[str, Any]:
    """Every key that has a default, nested as in a config file."""
    return _defaults_of(_schema())


def section_defaults(section: str) -> dict[str, Any]:
    """The defaults of one block of the config (``train``, ``registration``, ...)."""
    found = defaults().get(section)
    if not isinstance(found, dict):
        raise KeyError(f"the config schema has no block {section!r}")
    return found


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"epochs": 6}}`` -> ``{"train.epochs": 6}``; leaves that are mappings of values
    (``augment.copies``) stay whole, as the schema declares them."""
    out: dict[str, Any] = {}
    props = _schema()["properties"]
    for key, value in config.items():
        name = f"{prefix}{key}"
        section = props.get(key, {}) if not prefix else {}
        if isinstance(value, Mapping) and section.get("properties"):
            out.update(flatten(value, prefix=f"{name}."))
        else:
            out[name] = value
    return out


def paper_differences() -> dict[str, str]:
    """``{"train.val_fraction": why, ...}``: every key whose ``paper_differs:`` says how the protocol
    deliberately departs from the paper (or fills in what the paper leaves open), in schema order."""
    out: dict[str, str] = {}
    for key, prop in _schema()["properties"].items():
        if "paper_differs" in prop:
            out[key] = " ".join(str(prop["paper_differs"]).split())
        for sub, sp in prop.get("properties", {}).items():
            if "paper_differs" in sp:
                out[f"{key}.{sub}"] = " ".join(str(sp["paper_differs"]).split())
    return out


def _show(value: Any) -> str:
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f"`{value}`"
    if isinstance(value, Mapping):
        return "`{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}`"
    if isinstance(value, list):
        return "`[" + ", ".join(str(v) for v in value) + "]`"
    return f"{value}"


_README_HEAD = """\
# Configuration

<!-- Generated from spinefx/config.schema.yaml by scripts/config_readme.py: edit the schema, then run
     `.venv/bin/python scripts/config_readme.py`. `make lint` fails when this file is stale. -->

Every key, its default and what it changes. The **default** column is the config schema
(`spinefx/config.schema.yaml`, linked as `workflow/schemas/config.schema.yaml`): the one place a
default is written, the paper's protocol wherever the paper gives a value. `config/config.yaml` (the
default run, the built-in demo sized for 2 CPU cores) sets only what the demo changes; its values are
the **config.yaml** column. `config/paper.yaml` states the paper's protocol in full; a value is shown in
the **paper.yaml** column where it differs from the default. Your own `--configfile my.yaml` is merged
over `config/config.yaml`, so it needs only the keys it changes. Every key is checked before any job
runs: an unknown key or a wrong type stops the dry run. Experiment settings live here; site settings
(cluster, partitions, GPUs) live in `profiles/`.

Units are in the key names: `_mm` millimetres, `_deg` degrees, `_px` pixels of the patch.
"""


def render_config_readme(demo: Mapping[str, Any], paper: Mapping[str, Any]) -> str:
    """config/README.md: one table per block of the schema, with the demo's and the paper's values."""
    demo_flat, paper_flat = flatten(demo), flatten(paper)
    default_flat = flatten(defaults())
    lines = [_README_HEAD]

    def row(name: str, prop: Mapping[str, Any]) -> str:
        default = _show(default_flat[name]) if "default" in prop else "(required)"
        ours = _show(demo_flat[name]) if name in demo_flat else ""
        theirs = paper_flat.get(name, default_flat.get(name))
        paper_cell = _show(theirs) if name in paper_flat and theirs != default_flat.get(name) else ""
        text = " ".join(str(prop.get("description", "")).split())
        return f"| `{name}` | {default} | {ours} | {paper_cell} | {text} |"

    header = [
        "| key | default | config.yaml | paper.yaml | what it changes |",
        "| --- | --- | --- | --- | --- |",
    ]
    top = [(k, p) for k, p in _schema()["properties"].items() if not p.get("properties")]
    lines += ["## Cohort", "", *header, *(row(k, p) for k, p in top), ""]
    for key, prop in _schema()["properties"].items():
        if not prop.get("properties"):
            continue
        title = f"## {key}" + (f" ({prop['description']})" if prop.get("description") else "")
        lines += [
            title,
            "",
            *header,
            *(row(f"{key}.{sub}", sp) for sub, sp in prop["properties"].items()),
            "",
        ]
    lines += [
        "## Where the protocol differs from the paper",
        "",
        "Every deliberate difference between `config/paper.yaml` (the schema defaults) and the paper as",
        "published, and every value the paper leaves open that spinefx had to choose; from the",
        "`paper_differs:` field of each key in the schema (tests/test_settings.py keeps this list in step",
        "with what the paper states).",
        "",
        "| key | paper.yaml | how and why it differs |",
        "| --- | --- | --- |",
        *(
            f"| `{name}` | {_show(paper_flat.get(name, default_flat.get(name)))} | {why} |"
            for name, why in paper_differences().items()
        ),
        "",
    ]
    return "\n".join(lines).rstrip() + "\n"
