"""The built-in demo cohort: synthetic sagittal spine MRI written as DICOM, with its sheets."""


rule demo_cohort:
    output:
        sheet="results/demo/patients.tsv",
        features="results/demo/features.tsv",
        readers="results/demo/readers.tsv",
        truth="results/demo/truth.tsv",
        dicom=directory("results/demo/dicom"),
    log:
        "logs/demo_cohort.log",
    benchmark:
        "benchmarks/demo_cohort.tsv"
    conda:
        "../../envs/imaging.yaml"
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        demo=config["demo"],
    script:
        "../scripts/demo_cohort.py"


rule demo_held_aside:
    """Demo patients never used in training (issue 17): the demo's `predict` sheet, truth apart."""
    output:
        predict="results/demo/new/predict.tsv",
        sheet="results/demo/new/patients.tsv",
        features="results/demo/new/features.tsv",
        readers="results/demo/new/readers.tsv",
        truth="results/demo/new/truth.tsv",
        dicom=directory("results/demo/new/dicom"),
    log:
        "logs/demo_held_aside.log",
    benchmark:
        "benchmarks/demo_held_aside.tsv"
    conda:
        "../../envs/imaging.yaml"
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        demo=config["demo"],
    script:
        "../scripts/demo_held_aside.py"
