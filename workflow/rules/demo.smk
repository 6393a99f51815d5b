"""The built-in demo cohort: synthetic sagittal spine MRI written as DICOM, with its sheets."""


rule demo_cohort:
    output:
        sheet="results/demo/patients.tsv",
        features="results/demo/features.tsv",
        readers="results/demo/readers.tsv",
        truth="results/demo/truth.tsv",
        dicom=directory("results/demo/dicom"),
    params:
        demo=config["demo"],
    log:
        "logs/demo_cohort.log",
    benchmark:
        "benchmarks/demo_cohort.tsv"
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/imaging.yaml"
    script:
        "../scripts/demo_cohort.py"
