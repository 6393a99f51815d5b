"""The paper's vocabulary: the 15 binary imaging features of Table 1 and the published rates.

Shared by the demo cohort (which draws features at these rates) and the statistics (which tests
them), so the two can never disagree on a name.
"""

from __future__ import annotations

# Column names of features.tsv, in the order of the paper's Table 1.
FEATURES: tuple[str, ...] = (
    "absence_of_collapse",
    "anterior_wedge_deformity",
    "compression_of_entire_body",
    "central_concave_deformity",
    "homogeneous_marrow_signal",
    "intravertebral_dark_line",
    "band_pattern_edema",
    "intravertebral_dark_patch",
    "fluid_or_necrotic_cleft",
    "diffuse_signal_change",
    "intravertebral_mass",
    "vertebral_body_protrusion",
    "epidural_paraspinal_mass",
    "pedicle_posterior_involvement",
    "skipped_lesion_other_vertebra",
)

# Table 1 of Yeh et al. 2022: (positives, total) per class.
PAPER_TABLE1: dict[str, dict[str, tuple[int, int]]] = {
    "absence_of_collapse": {"malignant": (17, 50), "benign": (3, 140)},
    "anterior_wedge_deformity": {"malignant": (7, 50), "benign": (77, 140)},
    "compression_of_entire_body": {"malignant": (25, 50), "benign": (54, 140)},
    "central_concave_deformity": {"malignant": (14, 50), "benign": (59, 140)},
    "homogeneous_marrow_signal": {"malignant": (0, 50), "benign": (48, 140)},
    "intravertebral_dark_line": {"malignant": (0, 50), "benign": (37, 140)},
    "band_pattern_edema": {"malignant": (2, 50), "benign": (44, 140)},
    "intravertebral_dark_patch": {"malignant": (5, 50), "benign": (14, 140)},
    "fluid_or_necrotic_cleft": {"malignant": (1, 50), "benign": (8, 140)},
    "diffuse_signal_change": {"malignant": (44, 50), "benign": (31, 140)},
    "intravertebral_mass": {"malignant": (11, 50), "benign": (0, 140)},
    "vertebral_body_protrusion": {"malignant": (16, 50), "benign": (19, 140)},
    "epidural_paraspinal_mass": {"malignant": (22, 50), "benign": (1, 140)},
    "pedicle_posterior_involvement": {"malignant": (5, 50), "benign": (0, 140)},
    "skipped_lesion_other_vertebra": {"malignant": (39, 50), "benign": (8, 140)},
}

# Table 2 of the paper: tp, tn, fn, fp per reader (50 malignant, 140 benign).
PAPER_TABLE2: dict[str, dict[str, int]] = {
    "MSK Radiologist": {"tp": 47, "tn": 139, "fn": 3, "fp": 1},
    "Resident R4": {"tp": 47, "tn": 135, "fn": 3, "fp": 5},
    "Resident R1": {"tp": 39, "tn": 86, "fn": 11, "fp": 54},
    "ResNet50 Model": {"tp": 47, "tn": 128, "fn": 3, "fp": 12},
}

# Reader ids used in readers.tsv of the demo cohort, with the paper reader each imitates.
DEMO_READERS: dict[str, str] = {"msk": "MSK Radiologist", "r4": "Resident R4", "r1": "Resident R1"}

LABELS: tuple[str, str] = ("benign", "malignant")


def paper_rate(feature: str, label: str) -> float:
    """Published fraction of patients of ``label`` with ``feature`` present."""
    pos, total = PAPER_TABLE1[feature][label]
    return pos / total


def reader_sensitivity_specificity(reader: str) -> tuple[float, float]:
    """Published sensitivity and specificity of a paper reader (name as in PAPER_TABLE2)."""
    c = PAPER_TABLE2[reader]
    return c["tp"] / (c["tp"] + c["fn"]), c["tn"] / (c["tn"] + c["fp"])
