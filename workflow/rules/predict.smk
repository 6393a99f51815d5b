"""From study to decision support (issue 17): calibration on the out-of-fold calls, the simulated
assisted reading, the final model (the fold ensemble) and calls with case cards on new patients.
"""


rule calibrate:
    input:
        per_patient="results/predictions/per_patient.tsv",
    output:
        calibrator="results/final/calibration.json",
        calibrated="results/predictions/calibrated.tsv",
        figure=report(
            "results/figures/calibration.png",
            caption="../report/calibration.rst",
            category="Figures",
            labels={"figure": "calibration"},
        ),
        table="results/tables/calibrator.tsv",
        md="results/tables/calibrator.md",
    log:
        "logs/calibrate.log",
    conda:
        "../../envs/statistics.yaml"
    resources:
        mem_mb=lambda wc, attempt: 1000 * attempt,
        runtime=lambda wc, attempt: 5 * attempt,
    params:
        settings=config["calibration"],
    script:
        "../scripts/calibrate.py"


rule assisted_reading:
    input:
        readers=READERS_SHEET or [],
        calibrated="results/predictions/calibrated.tsv",
    output:
        tsv="results/tables/assisted_reading.tsv",
        md=report(
            "results/tables/assisted_reading.md",
            caption="../report/assisted_reading.rst",
            category="Tables",
            labels={"table": "assisted_reading"},
        ),
    log:
        "logs/assisted_reading.log",
    conda:
        "../../envs/statistics.yaml"
    resources:
        mem_mb=lambda wc, attempt: 1000 * attempt,
        runtime=lambda wc, attempt: 5 * attempt,
    params:
        settings=config["calibration"],
        stats=config["stats"],
    script:
        "../scripts/assisted_reading.py"


rule final_model:
    input:
        models=fold_outputs("model.pt"),
        per_patient="results/predictions/per_patient.tsv",
        calibrated="results/predictions/calibrated.tsv",
        calibration="results/tables/calibrator.tsv",
    output:
        model="results/final/model.pt",
        torchscript="results/final/model.torchscript.pt",
        card="results/final/model_card.md",
    log:
        "logs/final_model.log",
    benchmark:
        "benchmarks/final_model.tsv"
    conda:
        "../../envs/training.yaml"
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 10 * attempt,
    params:
        folds=FOLDS,
        aggregate=config["merge"]["method"],
        stats=config["stats"],
        size=config["patches"]["size"],
        source="the built-in synthetic demo cohort" if DEMO else PATIENT_SHEET,
    script:
        "../scripts/final_model.py"


rule predict:
    input:
        model="results/final/model.pt",
        calibrator="results/final/calibration.json",
        patches=expand(
            "results/patches/original/{patient}.h5", patient=PREDICT_PATIENTS
        ),
    output:
        per_patient=report(
            "results/predict/per_patient.tsv",
            caption="../report/predict.rst",
            category="Prediction on new patients",
        ),
        per_slice="results/predict/per_slice.tsv",
    log:
        "logs/predict.log",
    benchmark:
        "benchmarks/predict.tsv"
    conda:
        "../../envs/training.yaml"
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 10 * attempt,
    params:
        patients=PREDICT_PATIENTS,
    script:
        "../scripts/predict.py"


rule case_card:
    input:
        unpack(sheet_inputs),
        t2="results/nifti/{patient}/t2.nii.gz",
        t2_json="results/nifti/{patient}/t2.json",
        t1_in_t2="results/registration/{patient}/t1_in_t2.nii.gz",
        patches="results/patches/original/{patient}.h5",
        model="results/final/model.pt",
        calibrator="results/final/calibration.json",
        calibrated="results/predictions/calibrated.tsv",
        per_patient="results/predict/per_patient.tsv",
    output:
        png=report(
            "results/predict/cards/{patient}.png",
            caption="../report/case_card.rst",
            category="Prediction on new patients",
            labels={"patient": "{patient}"},
        ),
        html="results/predict/cards/{patient}.html",
    log:
        "logs/case_card/{patient}.log",
    group:
        "case_card"
    conda:
        "../../envs/training.yaml"
    resources:
        mem_mb=lambda wc, attempt: 3000 * attempt,
        runtime=lambda wc, attempt: 5 * attempt,
    params:
        record=patient_record,
        settings=config["final"],
    script:
        "../scripts/case_card.py"


rule predict_all:
    input:
        "results/predict/per_patient.tsv",
        expand(
            "results/predict/cards/{patient}.{ext}",
            patient=PREDICT_PATIENTS,
            ext=["png", "html"],
        ),
