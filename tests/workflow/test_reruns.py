"""Reruns after the tiny run: `make retrain FOLD=k` plans one training job and what depends on it, and
run_info reruns when the config changes (Snakemake's params trigger)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

from workflow_run import REPO, TINY, snakemake

DOWNSTREAM_OF_A_FOLD = {
    "merge_predictions": 1,
    "stats_tables": 1,
    "stats_figures": 1,
    "figures": 1,
    "calibrate": 1,
    "assisted_reading": 1,
    "final_model": 1,
    "predict": 1,
    "case_card": 4,  # tiny.yaml: 4 held-aside patients
    "all": 1,
}


def planned_jobs(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    if "Job stats:" not in output:
        return {}
    table = output.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def retrain_args(fold: int) -> list[str]:
    """The Snakemake arguments of `make retrain FOLD=<fold>`, from the Makefile (make -n runs nothing)."""
    out = subprocess.run(
        ["make", "-n", "retrain", f"FOLD={fold}"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    (line,) = [line for line in out.splitlines() if "/snakemake " in line and "--forcerun" in line]
    return shlex.split(line)[1:]


def test_retrain_one_fold_plans_that_fold_and_its_downstream_and_run_info_follows_the_config(
    tiny_run: Path, tmp_path: Path
) -> None:
    run = shutil.copytree(tiny_run, tmp_path / "run", ignore=shutil.ignore_patterns("locks"))
    args = retrain_args(2)
    assert args[args.index("--forcerun") + 1] == "results/train/fold_2/model.pt"
    proc = snakemake(run, *args, "-n", "--configfile", str(TINY))
    log = proc.stdout + proc.stderr
    assert planned_jobs(log) == {"train_fold": 1, **DOWNSTREAM_OF_A_FOLD}, log[-3000:]
    assert re.findall(r"rule train_fold:\n(?: +.*\n)*? +wildcards: fold=(\d+)", log) == ["2"]

    # run_info has the config as a param: nothing to do while it is unchanged, a rerun when epochs change.
    target = ["results/run_info.tsv", "-n", "--configfile", str(TINY)]
    assert planned_jobs(snakemake(run, *target).stdout) == {}
    (tmp_path / "epochs.yaml").write_text("train: {epochs: 3}\n")
    proc = snakemake(run, *target, str(tmp_path / "epochs.yaml"))
    assert planned_jobs(proc.stdout) == {"run_info": 1}, proc.stdout[-3000:]
    assert "Params have changed since last execution" in proc.stdout
    assert "train_fold" not in proc.stdout  # only what the target needs: the report page, not a retraining
