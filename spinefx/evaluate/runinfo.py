"""What a run was: cohort, protocol and software versions, for the report's landing page."""

from __future__ import annotations

import platform
from importlib import metadata

import pandas as pd

import spinefx
from spinefx.errors import SpinefxError
from spinefx.learn.weights import pretrained_source

PACKAGES = (
    "snakemake",
    "torch",
    "torchvision",
    "SimpleITK",
    "pydicom",
    "numpy",
    "pandas",
    "scipy",
    "statsmodels",
)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def weights_rows(train: dict) -> list[tuple[str, str, str]]:
    """Which ImageNet weights the protocol starts from (path and SHA-256), as this node finds them
    with the same lookup the training job uses (each model.pt records what its job loaded)."""
    try:
        source = pretrained_source(train["arch"], train.get("pretrained_weights"))
    except SpinefxError:
        return [("protocol", "ImageNet weights", f"not found: {train.get('pretrained_weights')}")]
    if source is None:
        return [("protocol", "ImageNet weights", "none found: random initialisation")]
    return [
        ("protocol", "ImageNet weights", source["path"]),
        ("protocol", "ImageNet weights SHA-256", source["sha256"]),
    ]


def run_info(config: dict, folds: pd.DataFrame) -> pd.DataFrame:
    """Rows of (section, item, value) describing the run; no patient-level information."""
    counts = folds["label"].value_counts()
    copies = config["augment"]["copies"]
    rows = [
        ("cohort", "source", "built-in demo (synthetic)" if config["cohort"] == "demo" else "patients sheet"),
        ("cohort", "patients", str(len(folds))),
        ("cohort", "malignant", str(int(counts.get("malignant", 0)))),
        ("cohort", "benign", str(int(counts.get("benign", 0)))),
        ("protocol", "cross-validation folds", str(config["folds"]["k"])),
        ("protocol", "network", config["train"]["arch"]),
        ("protocol", "epochs (most)", str(config["train"]["epochs"])),
        ("protocol", "early-stopping patience", str(config["train"]["patience"])),
        ("protocol", "augmentation copies", f"benign x{copies['benign']}, malignant x{copies['malignant']}"),
        ("protocol", "samples per patient", f"{len(config['patches']['centre_offsets'])} centre slices"),
        (
            "protocol",
            "per-patient merge",
            f"{config['merge']['method']}, threshold {config['merge']['threshold']}",
        ),
        ("protocol", "registration", config["registration"]["transform"]),
        *weights_rows(config["train"]),
        ("protocol", "dropout before the final layer", str(config["train"].get("dropout", 0.0))),
        ("software", "spinefx", spinefx.__version__),
        ("software", "python", platform.python_version()),
    ]
    rows += [("software", p, _version(p)) for p in PACKAGES]
    return pd.DataFrame(rows, columns=["section", "item", "value"])
