"""The profiles without a cluster: what a SLURM run of the paper's protocol would ask for (a dry run through
profiles/slurm submits nothing), that the workflow profile cannot override a cluster profile, and that a
job killed for memory is retried with more (the local executor on a toy workflow)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import textwrap
from pathlib import Path

import yaml

from workflow_run import REPO, SNAKEMAKE, snakemake

SITE_PROFILE = REPO / "profiles" / "slurm"
# What a workflow profile may never set: it wins over every --profile key by key (Snakemake 9).
CLUSTER_KEYS = {
    "cores",
    "jobs",
    "executor",
    "resources",
    "default-resources",
    "set-resources",
    "set-threads",
    "max-threads",
    "group-components",
    "groups",
    "retries",
}


def load_plan_bench():
    spec = importlib.util.spec_from_file_location("plan_bench", REPO / "bench" / "plan.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_workflow_profile_leaves_cores_and_resources_to_the_cluster_profile() -> None:
    keys = set(yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text()))
    assert not keys & CLUSTER_KEYS, keys & CLUSTER_KEYS
    site = yaml.safe_load((SITE_PROFILE / "config.yaml").read_text())
    # A dry run without --cores plans with 1 thread per job: the site profile sets cores itself.
    assert site["cores"] >= yaml.safe_load((REPO / "config" / "paper.yaml").read_text())["train"]["threads"]


def job_blocks(log: str, rule: str) -> list[dict[str, str]]:
    """The fields (threads, resources, wildcards, ...) of every planned job of `rule` in a dry-run log."""
    blocks = []
    for match in re.finditer(rf"^ *rule {rule}:\n((?: +\w+: .*\n)+)", log, re.M):
        fields = dict(re.findall(r"^ +(\w+): (.*)$", match.group(1), re.M))
        blocks.append(fields)
    return blocks


def resources(fields: dict[str, str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in fields["resources"].split(", "))


def test_paper_plan_through_the_slurm_profile(tmp_path: Path) -> None:
    """config/paper.yaml as a new user runs it (`--profile profiles/slurm`, no --cores): train_fold asks
    for the configured threads as CPUs, a GPU, the GPU partition; per-patient steps are group jobs."""
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    proc = snakemake(
        tmp_path, "-n", "--profile", str(SITE_PROFILE), "--configfile", str(REPO / "config" / "paper.yaml")
    )
    log = proc.stdout + proc.stderr

    train = job_blocks(log, "train_fold")
    assert len(train) == paper["folds"]["k"]
    for fields in train:
        res = resources(fields)
        assert fields["threads"] == str(paper["train"]["threads"]) == res["cpus_per_task"], fields
        assert (res["gpu"], res["slurm_partition"], res["slurm_account"]) == ("1", "gpu", "spinefx"), res
        assert res["mem_mb"] == "16000" and res["runtime"] == "240", res  # attempt 1; a retry doubles them

    # Every per-patient step is inside a group job of at most 50 patients; nothing else is.
    n_patients = paper["demo"]["n_patients"]
    groups = log.split("Group job patient (jobs in lexicogr. order):")[1:]
    assert len(groups) == -(-n_patients // 50)  # 190 patients: 4 SLURM jobs instead of 950
    in_groups = [set(re.findall(r"wildcards: patient=(\w+)", g.split("\n[")[0])) for g in groups]
    assert sorted(p for g in in_groups for p in g) == [f"demo_{i:03d}" for i in range(1, n_patients + 1)]
    assert max(len(g) for g in in_groups) == 50
    for rule in ("dicom_to_nifti", "register_t1_to_t2", "extract_patches", "augment_patches"):
        assert not re.search(rf"^(\[.*\] )?rule {rule}:", log, re.M), rule  # never a job of its own
        for fields in job_blocks(log, rule):
            assert resources(fields)["slurm_partition"] == "cpu" and fields.get("threads", "1") == "1"

    bench = load_plan_bench()
    counts = bench.count_sbatch_jobs(log, bench.local_rules())
    assert counts["group patient"] == len(groups) and counts["train_fold"] == paper["folds"]["k"]
    assert "assign_folds" not in counts and "all" not in counts  # local rules: no sbatch
    assert sum(counts.values()) < 25, counts


def test_every_rule_asks_for_more_memory_and_time_on_a_retry() -> None:
    lines = [
        (path.name, line.strip())
        for path in sorted((REPO / "workflow" / "rules").glob("*.smk"))
        for line in path.read_text().splitlines()
        if re.match(r"\s+(mem_mb|runtime)=", line)
    ]
    assert len(lines) > 20
    assert [
        x for x in lines if not re.fullmatch(r"(mem_mb|runtime)=lambda wc, attempt: \d+ \* attempt,", x[1])
    ] == []


OOM_TOY = """
rule all:
    input: "model.txt"

rule train:
    output: "model.txt"
    resources: mem_mb=lambda wc, attempt: 1000 * attempt, runtime=lambda wc, attempt: 5 * attempt
    shell:
        # Like the kernel's OOM killer: SIGKILL (exit 137) while the job has less memory than it needs.
        "echo attempt with {resources.mem_mb} MB {resources.runtime} min >> attempts.txt; "
        "if [ {resources.mem_mb} -lt 1500 ]; then kill -9 $$; fi; echo {resources.mem_mb} > {output}"
"""


def test_a_job_killed_for_memory_is_retried_with_more(tmp_path: Path) -> None:
    """The site profile's `retries` with the rules' attempt-scaled resources (local executor)."""
    (tmp_path / "Snakefile").write_text(textwrap.dedent(OOM_TOY))
    cmd = [SNAKEMAKE, "-d", str(tmp_path), "--profile", str(SITE_PROFILE), "--executor", "local"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert (tmp_path / "attempts.txt").read_text().splitlines() == [
        "attempt with 1000 MB 5 min",
        "attempt with 2000 MB 10 min",
    ]
    assert (tmp_path / "model.txt").read_text().strip() == "2000"
    assert "Trying to restart job" in proc.stdout + proc.stderr
