"""Lesion patches (slice +-1, T1+T2 = 6 channels, 64x64, z-scored) and their augmented copies."""


rule extract_patches:
    input:
        unpack(sheet_inputs),
        t1="results/nifti/{patient}/t1.nii.gz",
        t2="results/nifti/{patient}/t2.nii.gz",
        t2_json="results/nifti/{patient}/t2.json",
        tfm="results/registration/{patient}/t1_to_t2.tfm",
    output:
        "results/patches/original/{patient}.h5",
    log:
        "logs/extract_patches/{patient}.log",
    benchmark:
        "benchmarks/extract_patches/{patient}.tsv"
    group:
        "patient"
    conda:
        "../../envs/imaging.yaml"
    resources:
        mem_mb=lambda wc, attempt: 1000 * attempt,
        runtime=lambda wc, attempt: 2 * attempt,
    params:
        record=patient_record,
        settings=config["patches"],
    script:
        "../scripts/extract_patches.py"


rule augment_patches:
    input:
        "results/patches/original/{patient}.h5",
    output:
        "results/patches/{patient}.h5",
    log:
        "logs/augment_patches/{patient}.log",
    benchmark:
        "benchmarks/augment_patches/{patient}.tsv"
    group:
        "patient"
    conda:
        "../../envs/training.yaml"
    resources:
        mem_mb=lambda wc, attempt: 1500 * attempt,
        runtime=lambda wc, attempt: 2 * attempt,
    params:
        settings=config["augment"],
    script:
        "../scripts/augment_patches.py"
