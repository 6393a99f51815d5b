"""Patient-level stratified folds and one training job per fold (the GPU job)."""


rule assign_folds:
    input:
        sheet=PATIENT_SHEET,
    output:
        "results/folds.tsv",
    log:
        "logs/assign_folds.log",
    conda:
        "../../envs/statistics.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        settings=config["folds"],
    script:
        "../scripts/assign_folds.py"


rule train_fold:
    input:
        folds="results/folds.tsv",
        patches=patch_files,
    output:
        model="results/train/fold_{fold}/model.pt",
        history="results/train/fold_{fold}/history.tsv",
        predictions="results/train/fold_{fold}/predictions.tsv",
        curve=report(
            "results/train/fold_{fold}/curve.png",
            caption="../report/training_curve.rst",
            category="Training",
            labels={"fold": "{fold}"},
        ),
    log:
        "logs/train_fold/fold_{fold}.log",
    benchmark:
        "benchmarks/train_fold/fold_{fold}.tsv"
    conda:
        "../../envs/training.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=16000,
        runtime=240,
        gpu=1,
    params:
        settings=config["train"],
        fold=lambda wc: int(wc.fold),
        state="results/train/fold_{fold}/state/checkpoint.pt",
    script:
        "../scripts/train_fold.py"
