"""DICOM series to NIfTI (RAS+ affine) with a PHI-free JSON sidecar."""


rule dicom_to_nifti:
    input:
        unpack(dicom_inputs),
    output:
        nii="results/nifti/{patient}/{series}.nii.gz",
        json="results/nifti/{patient}/{series}.json",
    log:
        "logs/dicom_to_nifti/{patient}_{series}.log",
    benchmark:
        "benchmarks/dicom_to_nifti/{patient}_{series}.tsv"
    group:
        "patient"
    conda:
        "../../envs/imaging.yaml"
    resources:
        mem_mb=lambda wc, attempt: 1000 * attempt,
        runtime=lambda wc, attempt: 2 * attempt,
    params:
        record=patient_record,
        convert=config["convert"],
        series_rule=lambda wildcards: config["series"][wildcards.series],
    script:
        "../scripts/dicom_to_nifti.py"
