"""Per-patient calls, the paper's tables (with confidence intervals) and the figures."""


# A statistics-only run (`cohort: null`) draws ROC and confusion from its per-patient table; a full run
# draws them with the training figures.
ruleorder: stats_figures > figures


rule merge_predictions:
    input:
        folds="results/folds.tsv",
        predictions=fold_outputs("predictions.tsv"),
    output:
        per_slice="results/predictions/per_slice.tsv",
        per_patient=report(
            "results/predictions/per_patient.tsv",
            caption="../report/per_patient.rst",
            category="Predictions",
        ),
    log:
        "logs/merge_predictions.log",
    conda:
        "../../envs/statistics.yaml"
    resources:
        mem_mb=lambda wc, attempt: 1000 * attempt,
        runtime=lambda wc, attempt: 5 * attempt,
    params:
        settings=config["merge"],
        folds=FOLDS,
    script:
        "../scripts/merge_predictions.py"


rule stats_tables:
    input:
        unpack(stats_inputs),
    output:
        [
            (
                report(
                    path,
                    caption=f"../report/tables/{Path(path).stem}.rst",
                    category="Tables",
                    labels={"table": Path(path).stem},
                )
                if path.endswith(".html")
                else path
            )
            for path in table_outputs()
        ],
    log:
        "logs/stats_tables.log",
    benchmark:
        "benchmarks/stats_tables.tsv"
    conda:
        "../../envs/statistics.yaml"
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
        runtime=lambda wc, attempt: 10 * attempt,
    params:
        settings=config["stats"],
        model_reader=MODEL_READER,
        tables=table_outputs(),
        names=table_names(),
        k=config["folds"]["k"],
        threshold=config["merge"]["threshold"],
    script:
        "../scripts/stats_tables.py"


rule figures:
    input:
        unpack(optional_sheets),
        per_patient="results/predictions/per_patient.tsv",
        histories=fold_outputs("history.tsv"),
        models=fold_outputs("model.pt"),
        folds="results/folds.tsv",
        patches=patch_files,
    output:
        roc=report(
            "results/figures/roc.png",
            caption="../report/roc.rst",
            category="Figures",
            labels={"figure": "roc"},
        ),
        curves=report(
            "results/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="Figures",
            labels={"figure": "training_curves"},
        ),
        confusion=report(
            "results/figures/confusion.png",
            caption="../report/confusion.rst",
            category="Figures",
            labels={"figure": "confusion"},
        ),
        saliency=report(
            "results/figures/saliency.png",
            caption="../report/saliency.rst",
            category="Figures",
            labels={"figure": "saliency"},
        ),
    log:
        "logs/figures.log",
    conda:
        "../../envs/training.yaml"
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 15 * attempt,
    params:
        settings=config["stats"],
        model_reader=MODEL_READER,
        folds=FOLDS,
    script:
        "../scripts/figures.py"


rule run_info:
    input:
        folds="results/folds.tsv",
    output:
        tsv="results/run_info.tsv",
        md="results/run_info.md",
        html=report(
            "results/run_info.html",
            caption="../report/run_info.rst",
            category="Run",
        ),
    log:
        "logs/run_info.log",
    conda:
        "../../envs/statistics.yaml"
    resources:
        mem_mb=lambda wc, attempt: 500 * attempt,
        runtime=lambda wc, attempt: 5 * attempt,
    params:
        # The config as a param: Snakemake reruns this job when it changes (epochs, network, ...), so the
        # report's "What was run" page never describes an earlier run.
        config=config,
    script:
        "../scripts/run_info.py"


rule paper_tables:
    input:
        expand(
            "{folder}/{name}.tsv",
            folder=config["stats"]["paper_counts"] or "config/paper_counts",
            name=["table1", "table2", "mcnemar_claims", "error_analysis", "text"],
        ),
    output:
        [
            (
                report(
                    path,
                    caption=f"../report/tables/{Path(path).stem}.rst",
                    category="Paper recomputed",
                    labels={"table": Path(path).stem},
                )
                if path.endswith(".html")
                else path
            )
            for path in paper_table_outputs()
        ],
    log:
        "logs/paper_tables.log",
    conda:
        "../../envs/statistics.yaml"
    resources:
        mem_mb=lambda wc, attempt: 1000 * attempt,
        runtime=lambda wc, attempt: 5 * attempt,
    params:
        folder=config["stats"]["paper_counts"],
        tables=paper_table_outputs(),
    script:
        "../scripts/paper_tables.py"


rule stats_figures:
    input:
        unpack(optional_sheets),
        per_patient=per_patient_path() or [],
    output:
        [
            report(
                path,
                caption=f"../report/{Path(path).stem}.rst",
                category="Figures",
                labels={"figure": Path(path).stem},
            )
            for path in stats_figure_outputs()
        ],
    log:
        "logs/stats_figures.log",
    conda:
        "../../envs/statistics.yaml"
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
        runtime=lambda wc, attempt: 5 * attempt,
    params:
        settings=config["stats"],
        model_reader=MODEL_READER,
        figures=stats_figure_outputs(),
        threshold=config["merge"]["threshold"],
    script:
        "../scripts/stats_figures.py"
