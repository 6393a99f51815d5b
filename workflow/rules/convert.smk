"""DICOM series to NIfTI (RAS+ affine) with a PHI-free JSON sidecar; or a NIfTI the sheet gives, checked."""


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
    wildcard_constraints:
        patient=DICOM_PATIENT_RE,
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


# Patients whose sheet row gives t1_nifti/t2_nifti (issue 14 item 4): the same outputs, so every later
# rule is unchanged; the patient constraints of the two rules split the sheet's patients between them.
rule nifti_input:
    input:
        unpack(nifti_inputs),
    output:
        nii="results/nifti/{patient}/{series}.nii.gz",
        json="results/nifti/{patient}/{series}.json",
    log:
        "logs/nifti_input/{patient}_{series}.log",
    benchmark:
        "benchmarks/nifti_input/{patient}_{series}.tsv"
    wildcard_constraints:
        patient=NIFTI_PATIENT_RE,
    group:
        "patient"
    conda:
        "../../envs/imaging.yaml"
    resources:
        mem_mb=lambda wc, attempt: 1000 * attempt,
        runtime=lambda wc, attempt: 2 * attempt,
    params:
        record=patient_record,
    script:
        "../scripts/nifti_input.py"
