"""Shared fixtures; test helpers in tests/ (dicom_fixtures, privacy, workflow_run) import by name."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from workflow_run import TINY, snakemake  # noqa: E402


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole DAG on the tiny demo config (8 patients, 2 folds, 1 epoch) and its HTML report,
    once per test session."""
    workdir = tmp_path_factory.mktemp("tiny")
    snakemake(workdir, "--cores", "2", "--configfile", str(TINY))
    snakemake(workdir, "--configfile", str(TINY), "--report", str(workdir / "results" / "report.html"))
    return workdir
