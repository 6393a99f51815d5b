"""T1W onto T2W rigid registration (SimpleITK, Mattes MI, multi-resolution) with QC."""


rule register_t1_to_t2:
    input:
        unpack(registration_truth),
        unpack(sheet_inputs),
        t1="results/nifti/{patient}/t1.nii.gz",
        t2="results/nifti/{patient}/t2.nii.gz",
        t2_json="results/nifti/{patient}/t2.json",
    output:
        tfm="results/registration/{patient}/t1_to_t2.tfm",
        t1_in_t2="results/registration/{patient}/t1_in_t2.nii.gz",
        qc="results/registration/{patient}/qc.json",
        qc_png=report(
            "results/registration/{patient}/qc.png",
            caption="../report/registration_qc.rst",
            category="Registration QC",
            labels={"patient": "{patient}"},
        ),
    log:
        # the library writes qc.json/qc.png here first: a job that fails its checks keeps its logs, not
        # its outputs, so the user can still look at why; on success they are copied to the outputs
        "logs/register_t1_to_t2/{patient}.log",
        qc="logs/register_t1_to_t2/{patient}.qc.json",
        qc_png="logs/register_t1_to_t2/{patient}.qc.png",
    benchmark:
        "benchmarks/register_t1_to_t2/{patient}.tsv"
    group:
        "patient"
    conda:
        "../../envs/imaging.yaml"
    resources:
        mem_mb=lambda wc, attempt: 1000 * attempt,
        runtime=lambda wc, attempt: 3 * attempt,
    params:
        record=patient_record,
        settings=config["registration"],
    script:
        "../scripts/register_t1_to_t2.py"
