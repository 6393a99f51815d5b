"""Patient-level stratified folds and one training job per fold (the GPU job)."""


rule assign_folds:
    input:
        sheet=labels_sheet(),
    output:
        "results/folds.tsv",
    params:
        settings=config["folds"],
    log:
        "logs/assign_folds.log",
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/statistics.yaml"
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
    params:
        settings=config["train"],
    threads: config["train"]["threads"]
    log:
        "logs/train_fold/fold_{fold}.log",
    benchmark:
        "benchmarks/train_fold/fold_{fold}.tsv"
    resources:
        mem_mb=16000,
        runtime=240,
        gpu=1,
    conda:
        "../../envs/training.yaml"
    script:
        "../scripts/train_fold.py"
