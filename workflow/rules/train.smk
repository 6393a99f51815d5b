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
        mem_mb=lambda wc, attempt: 1000 * attempt,
        runtime=lambda wc, attempt: 5 * attempt,
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
        mem_mb=lambda wc, attempt: 16000 * attempt,
        runtime=lambda wc, attempt: 240 * attempt,
        gpu=1,
    params:
        settings=config["train"],
        fold=lambda wc: int(wc.fold),
        state="results/train/fold_{fold}/state/checkpoint.pt",
    script:
        "../scripts/train_fold.py"


# train.folds_per_job: all -> one job trains every fold as one stacked model and writes the very
# files train_fold writes, so merge, stats and figures read them unchanged; with 1 (the default)
# the rule order keeps one train_fold job per fold, today's DAG.
if config["train"]["folds_per_job"] == "all":

    ruleorder: train_folds_stacked > train_fold

else:

    ruleorder: train_fold > train_folds_stacked


rule train_folds_stacked:
    input:
        folds="results/folds.tsv",
        patches=patch_files,
    output:
        models=fold_outputs("model.pt"),
        histories=fold_outputs("history.tsv"),
        predictions=fold_outputs("predictions.tsv"),
        curves=[
            report(
                path,
                caption="../report/training_curve.rst",
                category="Training",
                labels={"fold": str(fold)},
            )
            for fold, path in zip(FOLDS, fold_outputs("curve.png"))
        ],
    log:
        "logs/train_folds_stacked.log",
    benchmark:
        "benchmarks/train_folds_stacked.tsv"
    conda:
        "../../envs/training.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=lambda wc, attempt: 32000 * attempt,
        runtime=lambda wc, attempt: 240 * attempt,
        gpu=1,
    params:
        settings=config["train"],
        folds=FOLDS,
        state="results/train/stacked_state/checkpoint.pt",
    script:
        "../scripts/train_folds_stacked.py"
