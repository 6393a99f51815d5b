"""Everything that is not a rule: config and sheet validation, wildcard constraints, input functions."""

import os
import re
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# Scripts import the spinefx library from this checkout in every environment a job may run in (local,
# conda, the conda image, a SLURM job that re-reads this file), except in the pip image
# (`--sdm apptainer` without conda): there the image's installed spinefx runs, and the checkout is
# taken off PYTHONPATH (apptainer passes the host's environment in, and the working directory may be
# the checkout itself). Snakemake itself (planning, input functions) always uses the checkout's.
_SDM = {str(m) for m in workflow.deployment_settings.deployment_method}
IMAGE_SPINEFX = "apptainer" in _SDM and "conda" not in _SDM
_PYTHONPATH = [
    p
    for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if p and os.path.realpath(p) != os.path.realpath(workflow.basedir)
]
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        _PYTHONPATH if IMAGE_SPINEFX else [workflow.basedir, *_PYTHONPATH]
    )
)
sys.path.insert(0, workflow.basedir)

from spinefx import sheets  # noqa: E402
from spinefx.dicom import nifti_input  # noqa: E402
from spinefx.evaluate import report_tables  # noqa: E402
from spinefx.errors import SpinefxError  # noqa: E402

validate(config, schema="../schemas/config.schema.yaml")

DEMO = config["cohort"] == "demo"
# Statistics-only run (`cohort: null`): no images, no training; the tables and figures come from
# stats.per_patient (any model's probabilities or calls), readers, features and/or stats.paper_counts.
STATS_ONLY = config["cohort"] is None
FOLDS = list(range(1, config["folds"]["k"] + 1))
MODEL_READER = (
    config["stats"]["model_reader"]
    or f"{config['train']['arch'].replace('resnet', 'ResNet')} model"
)

if DEMO:
    PATIENT_SHEET = "results/demo/patients.tsv"
    READERS_SHEET = "results/demo/readers.tsv"
    FEATURES_SHEET = "results/demo/features.tsv"
    PATIENTS = [f"demo_{i:03d}" for i in range(1, config["demo"]["n_patients"] + 1)]
    n_malignant = round(
        config["demo"]["n_patients"] * config["demo"]["malignant_fraction"]
    )
    if min(n_malignant, len(PATIENTS) - n_malignant) < config["folds"]["k"]:
        raise WorkflowError(
            f"demo cohort: {n_malignant} malignant and {len(PATIENTS) - n_malignant} benign patients "
            f"cannot fill {config['folds']['k']} stratified folds. Fix: raise demo.n_patients or "
            "lower folds.k."
        )
elif STATS_ONLY:
    # No patient sheet: the image rules stay defined but are never planned.
    PATIENT_SHEET = []
    READERS_SHEET = config["readers"]
    FEATURES_SHEET = config["features"]
    PATIENTS = []
else:
    PATIENT_SHEET = config["cohort"]
    READERS_SHEET = config["readers"]
    FEATURES_SHEET = config["features"]
    try:
        PATIENT_TABLE = sheets.load_patients(PATIENT_SHEET)
        sheets.check_fold_counts(
            PATIENT_TABLE, config["folds"]["k"], path=PATIENT_SHEET
        )
        if READERS_SHEET:
            validate(
                sheets.load_readers(READERS_SHEET, PATIENT_TABLE.index),
                schema="../schemas/readers.schema.yaml",
            )
        if FEATURES_SHEET:
            validate(
                sheets.load_features(FEATURES_SHEET, PATIENT_TABLE.index),
                schema="../schemas/features.schema.yaml",
            )
    except SpinefxError as exc:
        raise WorkflowError(f"spinefx: {exc}") from None
    validate(
        PATIENT_TABLE.drop(columns=["t1_path", "t2_path"]),
        schema="../schemas/patients.schema.yaml",
    )
    PATIENTS = list(PATIENT_TABLE.index)

# Prediction on new patients (issue 17): the `predict:` sheet (patients.tsv columns without label), or
# the demo's held-aside patients. They go through the per-patient rules, never training.
PREDICT_TABLE = None
if DEMO:
    n_held_aside = config["demo"]["n_held_aside"]
    if 0 < n_held_aside < 4:
        raise WorkflowError(
            f"demo.n_held_aside is {n_held_aside}: the held-aside demo needs at least 4 patients "
            "(2 per class). Fix: set it to 0 or 4 or more."
        )
    PREDICT_SHEET = "results/demo/new/predict.tsv" if n_held_aside else None
    PREDICT_PATIENTS = [f"new_{i:03d}" for i in range(1, n_held_aside + 1)]
else:
    PREDICT_SHEET = config["predict"]
    PREDICT_PATIENTS = []
    if PREDICT_SHEET:
        try:
            PREDICT_TABLE = sheets.load_patients(PREDICT_SHEET, labelled=False)
        except SpinefxError as exc:
            raise WorkflowError(f"spinefx: {exc}") from None
        PREDICT_PATIENTS = list(PREDICT_TABLE.index)
        both = sorted(set(PREDICT_PATIENTS) & set(PATIENTS))
        if both:
            raise WorkflowError(
                f"patients {', '.join(both)} are in both the cohort and the predict sheet "
                f"{PREDICT_SHEET}. Fix: a new patient needs a new patient_id."
            )


# NIfTI input (issue 14 item 4): which rule writes results/nifti/{patient}/ is fixed by the sheet when it
# loads, through each rule's patient constraint, so `snakemake -n` shows the one rule per patient.
PATIENT_WILDCARD = r"[A-Za-z0-9_-]+"
NIFTI_PATIENTS = [
    p
    for table in (PATIENT_TABLE if not (DEMO or STATS_ONLY) else None, PREDICT_TABLE)
    if table is not None
    for p in table.index[table["source"] == "nifti"]
]


def patients_regex(chosen, everyone):
    """A patient wildcard constraint matching exactly ``chosen`` among ``everyone``."""
    chosen = sorted(set(chosen))
    if not chosen:
        return r"(?!x)x"  # matches nothing
    if set(everyone) <= set(chosen):
        return PATIENT_WILDCARD
    return "|".join(re.escape(p) for p in chosen)


ALL_PATIENTS = PATIENTS + PREDICT_PATIENTS
NIFTI_PATIENT_RE = patients_regex(NIFTI_PATIENTS, ALL_PATIENTS)
DICOM_PATIENT_RE = patients_regex(set(ALL_PATIENTS) - set(NIFTI_PATIENTS), ALL_PATIENTS)


wildcard_constraints:
    patient=PATIENT_WILDCARD,
    series=r"t1|t2",
    fold=r"\d+",


def sheet_inputs(wildcards):
    """The sheets a per-patient job reads at run time: only the demo's, which a rule writes."""
    if (
        DEMO and wildcards.patient in PREDICT_PATIENTS
    ):  # held-aside demo patients (issue 17)
        return {"sheet": PREDICT_SHEET, "dicom": "results/demo/new/dicom"}
    return {"sheet": PATIENT_SHEET, "dicom": "results/demo/dicom"} if DEMO else {}


def dicom_inputs(wildcards):
    """The DICOM folder of one series (demo: the generated cohort)."""
    if DEMO:
        return sheet_inputs(wildcards)
    table = (
        PREDICT_TABLE if wildcards.patient in PREDICT_PATIENTS else PATIENT_TABLE
    )  # issue 17
    return {"dicom": table.loc[wildcards.patient, f"{wildcards.series}_path"]}


def nifti_inputs(wildcards):
    """The NIfTI file of one series of a patient whose sheet row gives NIfTI (issue 14 item 4)."""
    table = PREDICT_TABLE if wildcards.patient in PREDICT_PATIENTS else PATIENT_TABLE
    nifti = table.loc[wildcards.patient, f"{wildcards.series}_path"]
    # TR, TE, ... when a BIDS converter left one beside the file
    bids_json = nifti_input.bids_sidecar(nifti)
    return {
        "nifti": nifti,
        **({"bids_json": str(bids_json)} if bids_json.is_file() else {}),
    }


def patient_record(wildcards):
    """The sheet row of one patient as plain values; the demo's is read by the job itself."""
    if DEMO:
        return {}
    table = (
        PREDICT_TABLE if wildcards.patient in PREDICT_PATIENTS else PATIENT_TABLE
    )  # issue 17
    return sheets.patient_record(table, wildcards.patient)


def registration_truth(wildcards):
    """The demo's known misalignment, so registration QC can report its target registration error."""
    held_aside = (
        wildcards.patient in PREDICT_PATIENTS
    )  # their truth stays apart (issue 17)
    return {"truth": "results/demo/truth.tsv"} if DEMO and not held_aside else {}


def optional_sheets(wildcards):
    """Reader calls and features, when the cohort has them."""
    found = {}
    if READERS_SHEET:
        found["readers"] = READERS_SHEET
    if FEATURES_SHEET:
        found["features"] = FEATURES_SHEET
    return found


def patch_files(wildcards):
    return expand("results/patches/{patient}.h5", patient=PATIENTS)


def fold_outputs(name):
    return expand("results/train/fold_{fold}/{name}", fold=FOLDS, name=name)


def per_patient_path():
    """The per-patient predictions the statistics read: the network's, or (stats-only) the config's."""
    if STATS_ONLY:
        return config["stats"]["per_patient"]
    return "results/predictions/per_patient.tsv"


def per_patient_has_prob():
    """A stats-only table may hold calls only; the network's always has probabilities."""
    path = per_patient_path()
    return bool(path) and (not STATS_ONLY or report_tables.has_prob_column(path))


def stats_inputs(wildcards):
    """What stats_tables reads: predictions, and in a full run the folds and per-slice predictions."""
    found = {"per_patient": per_patient_path(), **optional_sheets(wildcards)}
    if not STATS_ONLY:
        found["folds"] = "results/folds.tsv"
        found["per_slice"] = "results/predictions/per_slice.tsv"
    return found


def table_names():
    return report_tables.table_names(
        per_patient=bool(per_patient_path()),
        has_prob=per_patient_has_prob(),
        readers=bool(READERS_SHEET),
        features=bool(FEATURES_SHEET),
        per_slice=not STATS_ONLY,
    )


def table_outputs():
    return expand(
        "results/tables/{table}.{ext}", table=table_names(), ext=["tsv", "md", "html"]
    )


def paper_table_outputs():
    if not config["stats"]["paper_counts"]:
        return []
    return expand(
        "results/tables/{table}.{ext}",
        table=report_tables.table_names(per_patient=False, paper=True),
        ext=["tsv", "md", "html"],
    )


def figure_outputs():
    if STATS_ONLY:
        return []
    return expand(
        "results/figures/{name}.png",
        name=["roc", "training_curves", "confusion", "saliency"],
    )


def stats_figure_outputs():
    """Figures that need predictions only: the decision curve; in a stats-only run also ROC and confusion."""
    if not per_patient_path():
        return []
    names = ["decision_curve"] if per_patient_has_prob() else []
    if STATS_ONLY:
        names += ["confusion"] + (["roc"] if per_patient_has_prob() else [])
    return expand("results/figures/{name}.png", name=names)


def predict_outputs():
    """Final model, calibration and the calls on new patients (issue 17; predict.smk)."""
    out = [
        "results/final/model.pt",
        "results/final/model.torchscript.pt",
        "results/final/model_card.md",
        "results/figures/calibration.png",
        expand("results/tables/calibrator.{ext}", ext=["tsv", "md"]),
    ]
    if READERS_SHEET:
        out += expand("results/tables/assisted_reading.{ext}", ext=["tsv", "md"])
    if PREDICT_PATIENTS:
        out += ["results/predict/per_patient.tsv"]
        out += expand(
            "results/predict/cards/{patient}.{ext}",
            patient=PREDICT_PATIENTS,
            ext=["png", "html"],
        )
    return out


def all_outputs():
    if STATS_ONLY:
        return [table_outputs(), paper_table_outputs(), stats_figure_outputs()]
    return [
        predict_outputs(),
        "results/run_info.tsv",
        expand("results/registration/{patient}/qc.json", patient=PATIENTS),
        "results/predictions/per_patient.tsv",
        table_outputs(),
        paper_table_outputs(),
        figure_outputs(),
        stats_figure_outputs(),
    ]
