"""The SLURM path for real: workflows submitted through profiles/slurm to the single-node cluster of
scripts/slurm_up.sh, checked against SLURM's own accounting (sacct).

Run with `pytest -m slurm tests/workflow/test_slurm.py` after `sudo scripts/slurm_up.sh`; every test is
skipped, with the reason, when no cluster answers here, except under CI (CI=true), where that fails them:
a CI run must not pass without its SLURM tests.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
SITE_PROFILE = REPO / "profiles" / "slurm"
TEST_PROFILE = REPO / "tests" / "profiles" / "slurm-local"
TINY = REPO / "tests" / "config" / "tiny.yaml"
ACCOUNT = "spinefx"

# A single job's id is a number, a group job's a UUID.
SUBMITTED_RE = re.compile(r"Job ([\w-]+) has been submitted with SLURM jobid (\d+)")
ARRAY_RE = re.compile(r"Submitted array job with Snakemake IDs ([\d,]+) and SLURM job ID (\d+)")
RUN_ID_RE = re.compile(r"SLURM run ID: (\S+)")


def cluster_problem() -> str | None:
    """Why the local cluster cannot take jobs now, or None when it can."""
    if shutil.which("sinfo") is None or shutil.which("sacct") is None:
        return "SLURM is not installed here (run `sudo scripts/slurm_up.sh`)"
    try:
        sinfo = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "sinfo timed out: slurmctld is not answering (run `sudo scripts/slurm_up.sh`)"
    if sinfo.returncode != 0:
        return (
            f"sinfo failed ({sinfo.stderr.strip()}): the cluster is not up (run `sudo scripts/slurm_up.sh`)"
        )
    states = sinfo.stdout.split()
    if not any(s.rstrip("*~#").startswith(("idle", "mixed")) for s in states):
        return f"no idle SLURM node (node states: {states or 'none'})"
    sacct = subprocess.run(
        ["sacct", "-n", "-X", "-S", "now-1minutes"], capture_output=True, text=True, timeout=30
    )
    if sacct.returncode != 0:
        # The plugin follows jobs with sacct; without accounting Snakemake would wait forever.
        return f"sacct fails ({sacct.stderr.strip()}): slurmdbd accounting is not running"
    return None


@pytest.fixture(scope="module")
def cluster() -> None:
    problem = cluster_problem()
    if problem and os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the SLURM cluster is not usable: {problem}")
    if problem:
        pytest.skip(problem)


def run_snakemake(workdir: Path, *args: str, timeout_s: int = 600) -> subprocess.CompletedProcess:
    cmd = [SNAKEMAKE, "-d", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=timeout_s)


def log_of(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


def submitted_jobs(log: str) -> dict[str, str]:
    """{snakemake job id: SLURM job id} from the main log (array tasks as <jobid>_<task>)."""
    jobs = dict(SUBMITTED_RE.findall(log))
    for ids, slurm_id in ARRAY_RE.findall(log):
        for task, job in enumerate(ids.split(","), start=1):
            jobs[job] = f"{slurm_id}_{task}"
    return jobs


def sacct_rows(slurm_ids: list[str]) -> dict[str, dict[str, str]]:
    """sacct's view of the given jobs (allocations only), keyed by job id."""
    fields = [
        "JobID",
        "JobName",
        "Account",
        "Partition",
        "State",
        "AllocCPUS",
        "ReqMem",
        "Timelimit",
        "AllocTRES",
        "Comment",
    ]
    out = subprocess.run(
        ["sacct", "-n", "-P", "-X", "-j", ",".join(slurm_ids), "-o", ",".join(fields)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    rows = [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines() if line]
    return {r["JobID"]: r for r in rows}


def sbatch_calls(log: str) -> dict[str, str]:
    """{rule: sbatch command line} from the debug lines of a --verbose run."""
    calls = {}
    for line in log.splitlines():
        if line.startswith("sbatch call: "):
            rule = re.search(r"--comment '?rule_(\w+?)(?:_wildcards_\S*)?'? ", line)
            assert rule, line
            calls[rule.group(1)] = line.removeprefix("sbatch call: ").split(" --wrap=")[0]
    return calls


TOY = """
localrules: all, gather

rule all:
    input: "gather.txt"

rule make:
    output: "parts/{i}.txt"
    resources: mem_mb=200, runtime=5
    shell: "echo $SLURM_JOB_ID ${{SLURM_ARRAY_JOB_ID:-}} ${{SLURM_ARRAY_TASK_ID:-}} > {output}"

rule pair:
    output: "pair.txt"
    threads: 2
    shell: "echo $SLURM_JOB_ID $SLURM_CPUS_PER_TASK > {output}"

rule gather:
    input: expand("parts/{i}.txt", i=[1, 2, 3]), "pair.txt"
    output: "gather.txt"
    shell: "cat {input} > {output}; echo ${{SLURM_JOB_ID:-local}} >> {output}"
"""


def id_written_by(path: Path) -> str:
    """The SLURM id a toy job recorded: <jobid>, or <array jobid>_<task> inside an array."""
    fields = path.read_text().split()
    return f"{fields[1]}_{fields[2]}" if len(fields) == 3 else fields[0]


@pytest.mark.parametrize("mode", ["jobs", "array"])
def test_toy_workflow_runs_every_nonlocal_job_as_a_slurm_job(
    cluster: None, tmp_path: Path, mode: str
) -> None:
    (tmp_path / "Snakefile").write_text(textwrap.dedent(TOY))
    array = ["--slurm-array-jobs=make"] if mode == "array" else []  # as documented in profiles/slurm
    proc = run_snakemake(tmp_path, "--profile", str(SITE_PROFILE), "--profile", str(TEST_PROFILE), *array)
    log = log_of(proc)
    assert proc.returncode == 0, log[-6000:]
    run_id = RUN_ID_RE.search(log).group(1)

    jobs = submitted_jobs(log)
    assert len(jobs) == 4, log[-6000:]  # make x3 and pair; all and gather are local rules
    rows = sacct_rows(list(jobs.values()))
    assert set(rows) == set(jobs.values())
    for row in rows.values():
        assert row["State"] == "COMPLETED", row
        assert row["JobName"] == run_id  # the plugin names every job of a run by its run ID
        assert row["Account"] == ACCOUNT and row["Partition"] == "cpu"  # site settings of profiles/slurm

    # Each job wrote the SLURM id it ran under: the one Snakemake logged and sacct accounted.
    make_ids = [id_written_by(tmp_path / "parts" / f"{i}.txt") for i in (1, 2, 3)]
    pair_id = (tmp_path / "pair.txt").read_text().split()[0]
    assert sorted([*make_ids, pair_id]) == sorted(jobs.values())
    for slurm_id in make_ids:
        row = rows[slurm_id]
        assert row["Comment"].startswith("rule_make_wildcards_"), row
        assert (row["AllocCPUS"], row["Timelimit"]) == ("1", "00:05:00")  # the rule's own resources
        mem_mb = int(row["ReqMem"].removesuffix("M"))
        # An array adds a megabyte or so to --mem for its encoded job list (the plugin's "memory fudge").
        assert mem_mb == 200 if mode == "jobs" else 200 < mem_mb <= 205, row
    if mode == "array":
        assert len({i.split("_")[0] for i in make_ids}) == 1 and all("_" in i for i in make_ids)  # one array
    else:
        assert {rows[i]["Comment"] for i in make_ids} == {f"rule_make_wildcards_{i}" for i in (1, 2, 3)}
    # threads: 2 became --cpus-per-task=2; the profile's default resources filled in memory and time.
    pair = rows[pair_id]
    assert (tmp_path / "pair.txt").read_text().split()[1] == "2"
    assert (pair["Comment"], pair["AllocCPUS"], pair["ReqMem"], pair["Timelimit"]) == (
        "rule_pair",
        "2",
        "2000M",
        "01:00:00",
    )
    # The local rule ran in Snakemake's own process, outside any SLURM job.
    assert (tmp_path / "gather.txt").read_text().split()[-1] == "local"
    # SLURM logs of successful jobs are kept where the README says.
    logs = {p.stem for p in (tmp_path / ".snakemake" / "slurm_logs").rglob("*.log")}
    assert {i.split("_")[0] for i in jobs.values()} <= {name.split("_")[0] for name in logs}, logs


GPU_TOY = """
rule train_fold:
    output: "model.txt"
    threads: 2
    resources: mem_mb=500, runtime=10, gpu=1
    # Inside the job step (srun) SLURM exports the step's GPUs as SLURM_STEP_GPUS, the batch job's as
    # SLURM_JOB_GPUS.
    shell:
        "echo $SLURM_JOB_ID $SLURM_JOB_PARTITION ${{SLURM_JOB_GPUS:-${{SLURM_STEP_GPUS:-none}}}} "
        "${{CUDA_VISIBLE_DEVICES:-none}} > {output}"
"""


def gres_alternative(profile: Path) -> str:
    """The commented `set-resources` block of the site profile, uncommented as its users would."""
    text = (profile / "config.yaml").read_text()
    block = text.split("# set-resources:")[1]
    lines = ["set-resources:"]
    for line in block.splitlines()[1:]:
        if not line.startswith("#   "):
            break
        lines.append(line[1:])
    return "\n".join(lines) + "\n"


def test_sbatch_asks_for_the_gpu_with_gpus_or_the_documented_gres(cluster: None, tmp_path: Path) -> None:
    """The site profile's GPU request is scheduled on the test cluster's GPU GRES, in the gpu partition, and
    the job sees its GPU (SLURM_JOB_GPUS, CUDA_VISIBLE_DEVICES); so does the documented --gres variant."""
    (tmp_path / "Snakefile").write_text(textwrap.dedent(GPU_TOY))
    fast = ["--slurm-init-seconds-before-status-checks", "2", "--retries", "0", "--verbose"]

    # The site profile as shipped: the rule's gpu: 1 becomes --gpus=1 (and the profile's account/partition).
    proc = run_snakemake(tmp_path, "--profile", str(SITE_PROFILE), *fast)
    log = log_of(proc)
    assert proc.returncode == 0, log[-4000:]
    calls = sbatch_calls(log)
    assert set(calls) == {"train_fold"}, log[-4000:]
    call = calls["train_fold"].split()
    assert "--gpus=1" in call and not any(a.startswith("--gres") for a in call)
    assert "-A" in call and call[call.index("-A") + 1] == ACCOUNT
    assert "-p" in call and call[call.index("-p") + 1] == "gpu"
    assert "--cpus-per-task=2" in call and call[call.index("--mem") + 1] == "500"
    slurm_id, partition, job_gpus, visible = (tmp_path / "model.txt").read_text().split()
    assert (partition, job_gpus, visible) == ("gpu", "0", "0")  # the GRES's one GPU, index 0
    row = sacct_rows([slurm_id])[slurm_id]
    assert row["State"] == "COMPLETED" and "gres/gpu=1" in row["AllocTRES"], row

    # The commented alternative for clusters that reject --gpus: --gres=gpu:1 and no --gpus.
    block = gres_alternative(SITE_PROFILE)
    assert 'gres: "gpu:1"' in block and "slurm_partition: gpu" in block
    gres_profile = tmp_path / "gres-profile"
    gres_profile.mkdir()
    (gres_profile / "config.yaml").write_text(block)
    (tmp_path / "model.txt").unlink()
    proc = run_snakemake(tmp_path, "--profile", str(SITE_PROFILE), "--profile", str(gres_profile), *fast)
    log = log_of(proc)
    assert proc.returncode == 0, log[-4000:]
    calls = sbatch_calls(log)
    assert set(calls) == {"train_fold"}, log[-4000:]
    call = calls["train_fold"].split()
    assert "--gres=gpu:1" in call and not any(a.startswith("--gpus") for a in call)
    assert call[call.index("-p") + 1] == "gpu"
    assert (tmp_path / "model.txt").read_text().split()[1:] == ["gpu", "0", "0"]


# A job Snakemake starts: top level, or indented under "Group job <group>" when it runs inside a group job.
JOB_HEADER_RE = re.compile(r"^( *)(local)?rule (\w+):\n(?: +.*\n)*? +jobid: (\d+)$", re.M)
GROUP_RE = re.compile(r"\] Group job (\w+) \(jobs in lexicogr\. order\):")
PER_PATIENT = {"dicom_to_nifti", "register_t1_to_t2", "extract_patches", "augment_patches"}


def planned_jobs(log: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    table = log.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.mark.slow
def test_real_workflow_on_the_tiny_demo_runs_through_the_cluster(cluster: None, tmp_path: Path) -> None:
    """The tiny demo through profiles/slurm: per-patient steps as group jobs (12 patients, 6 per job, 2 at a
    time), train_fold on the GPU GRES of the gpu partition, every SLURM job COMPLETED in sacct."""
    common = ["-s", str(REPO / "Snakefile"), "--configfile", str(TINY)]
    profiles = ["--profile", str(SITE_PROFILE), "--profile", str(TEST_PROFILE)]
    plan = planned_jobs(log_of(run_snakemake(tmp_path, *common, "-n", "--quiet", "rules")))
    proc = run_snakemake(tmp_path, *common, *profiles, timeout_s=1800)
    log = log_of(proc)
    assert proc.returncode == 0, log[-8000:]

    # Every job Snakemake started, whether it ran inside a group job, locally, or as a SLURM job of its own.
    started = {
        jobid: (bool(indent), bool(local), rule) for indent, local, rule, jobid in JOB_HEADER_RE.findall(log)
    }
    ran: dict[str, int] = {}
    for _, _, rule in started.values():
        ran[rule] = ran.get(rule, 0) + 1
    assert ran == plan  # the whole planned DAG ran, nothing more
    grouped = {rule for in_group, _, rule in started.values() if in_group}
    assert grouped == PER_PATIENT | {"case_card"}
    single = {jobid: rule for jobid, (in_group, local, rule) in started.items() if not in_group and not local}
    assert "train_fold" in single.values() and not PER_PATIENT & set(single.values())
    groups = GROUP_RE.findall(log)
    assert sorted(groups) == ["case_card", "patient", "patient"], groups  # 8 + 4 patients, 6 per group job

    # Each group job and each other non-local job was one SLURM job, and SLURM's accounting saw it finish.
    jobs = submitted_jobs(log)
    assert len(jobs) == len(single) + len(groups) and set(single) <= set(jobs), (jobs, single)
    rows = sacct_rows(list(jobs.values()))
    assert set(rows) == set(jobs.values())
    for jobid, slurm_id in jobs.items():
        row = rows[slurm_id]
        assert row["State"] == "COMPLETED" and row["Account"] == ACCOUNT, row
        if jobid in single:
            assert row["Comment"].split("_wildcards_")[0] == f"rule_{single[jobid]}", (row, single[jobid])
    # A group job's comment is rule_<group>_<its rules>.
    group_rows = [rows[s] for j, s in jobs.items() if j not in single]
    patient_rows = [r for r in group_rows if r["Comment"].startswith("rule_patient_")]
    assert len(patient_rows) == 2 and len(group_rows) == 3, group_rows
    assert [r["Comment"] for r in group_rows if r not in patient_rows] == ["rule_case_card_case_card"]
    for row in patient_rows:
        # A group runs `cores` (2) steps at a time: 2 CPUs and the memory of 2 steps (augment: 1500 MB each),
        # for the sum of its layers' runtimes (tiny: 6 patients, 2 at a time, about half an hour).
        assert (row["Partition"], row["AllocCPUS"], row["ReqMem"]) == ("cpu", "2", "3000M"), row
        assert "00:20:00" <= row["Timelimit"] <= "00:40:00", row
    train = [r for r in rows.values() if r["Comment"].startswith("rule_train_fold")]
    assert len(train) == plan["train_fold"]
    for row in train:
        assert row["ReqMem"] == "16000M" and row["Partition"] == "gpu", row  # the rule's and site's settings
        assert "gres/gpu=1" in row["AllocTRES"], row  # scheduled on the node's GPU GRES
    # The job saw the GPU it was given (spinefx.runlog logs the SLURM job of every step).
    train_log = (tmp_path / "logs" / "train_fold" / "fold_1.log").read_text()
    assert "SLURM_JOB_PARTITION=gpu" in train_log and "CUDA_VISIBLE_DEVICES=0" in train_log, train_log[:2000]
    patient_log = (tmp_path / "logs" / "register_t1_to_t2" / "demo_001.log").read_text()
    ids = {r["JobID"] for r in patient_rows}
    assert re.search(r"SLURM job: SLURM_JOB_ID=(\d+)", patient_log).group(1) in ids
    assert (tmp_path / "results" / "tables" / "table2_diagnostic.tsv").exists()
