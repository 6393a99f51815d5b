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
        mem_mb=4000,
        runtime=60,
    params:
        demo=config["demo"],
    script:
        "../scripts/demo_cohort.py"
