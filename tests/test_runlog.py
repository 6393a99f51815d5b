"""Script logging: the SLURM line that shows which job and which GPUs a step ran with."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from spinefx import runlog


def test_slurm_context_names_the_job_and_its_gpus() -> None:
    assert runlog.slurm_context({"PATH": "/bin"}) is None  # not in SLURM: nothing is logged
    line = runlog.slurm_context({"SLURM_JOB_ID": "42", "SLURM_JOB_GPUS": "0", "CUDA_VISIBLE_DEVICES": "0"})
    assert line.startswith("SLURM job: SLURM_JOB_ID=42 ")
    assert (
        "SLURM_JOB_GPUS=0 SLURM_STEP_GPUS=- CUDA_VISIBLE_DEVICES=0" in line
        and "SLURM_JOB_PARTITION=-" in line
    )


def test_start_logs_the_slurm_job(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setattr(sys, "stderr", sys.stderr)  # start() redirects it; undone after the test
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    log = tmp_path / "logs" / "step.log"
    runlog.start(log, "step")
    logging.getLogger().handlers[0].flush()
    assert "SLURM job: SLURM_JOB_ID=7 " in log.read_text() and "CUDA_VISIBLE_DEVICES=0" in log.read_text()
    logging.basicConfig(force=True)


def test_start_logs_the_python_and_spinefx_it_runs_on(tmp_path: Path, monkeypatch) -> None:
    """The log names this interpreter and the spinefx it imported (a container job shows the image's)."""
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    log = tmp_path / "logs" / "step.log"
    runlog.start(log, "step")
    logging.getLogger().handlers[0].flush()
    import spinefx

    line = next(x for x in log.read_text().splitlines() if "software: " in x)
    assert f"python={sys.executable} (" in line
    assert line.endswith(f"spinefx={spinefx.__version__} from {Path(spinefx.__file__).parent}")
    logging.basicConfig(force=True)
