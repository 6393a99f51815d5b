"""DICOM series to NIfTI (RAS+ affine) with a PHI-free JSON sidecar."""


rule dicom_to_nifti:
    input:
        unpack(dicom_inputs),
    output:
        nii="results/nifti/{patient}/{series}.nii.gz",
        json="results/nifti/{patient}/{series}.json",
    params:
        record=patient_record,
    log:
        "logs/dicom_to_nifti/{patient}_{series}.log",
    benchmark:
        "benchmarks/dicom_to_nifti/{patient}_{series}.tsv"
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/imaging.yaml"
    script:
        "../scripts/dicom_to_nifti.py"
