"""Everything that is not a rule: config and sheet validation, wildcard constraints, input functions."""

import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# Scripts import the spinefx library from this checkout, in every environment a job may run in
# (local, conda, container, a SLURM job that re-reads this file).
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        p for p in (workflow.basedir, os.environ.get("PYTHONPATH", "")) if p
    )
)
sys.path.insert(0, workflow.basedir)

from spinefx import sheets  # noqa: E402
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
    PATIENT_SHEET = []  # no patient sheet: the image rules stay defined but are never planned
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


wildcard_constraints:
    patient=r"[A-Za-z0-9_-]+",
    series=r"t1|t2",
    fold=r"\d+",


def sheet_inputs(wildcards):
    """The sheets a per-patient job reads at run time: only the demo's, which a rule writes."""
    return {"sheet": PATIENT_SHEET, "dicom": "results/demo/dicom"} if DEMO else {}


def dicom_inputs(wildcards):
    """The DICOM folder of one series (demo: the generated cohort)."""
    if DEMO:
        return sheet_inputs(wildcards)
    return {"dicom": PATIENT_TABLE.loc[wildcards.patient, f"{wildcards.series}_path"]}


def patient_record(wildcards):
    """The sheet row of one patient as plain values; the demo's is read by the job itself."""
    return {} if DEMO else sheets.patient_record(PATIENT_TABLE, wildcards.patient)


def registration_truth(wildcards):
    """The demo's known misalignment, so registration QC can report its target registration error."""
    return {"truth": "results/demo/truth.tsv"} if DEMO else {}


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


def all_outputs():
    if STATS_ONLY:
        return [table_outputs(), paper_table_outputs(), stats_figure_outputs()]
    return [
        "results/run_info.tsv",
        expand("results/registration/{patient}/qc.json", patient=PATIENTS),
        "results/predictions/per_patient.tsv",
        table_outputs(),
        paper_table_outputs(),
        figure_outputs(),
        stats_figure_outputs(),
    ]
