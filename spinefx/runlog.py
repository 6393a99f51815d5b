"""Logging for workflow scripts: everything into the rule's log file, the one-line error on the console.

A script calls :func:`start` first. Library code logs with ``logging.getLogger(__name__)`` or prints
progress to stderr; both land in ``logs/<rule>/<wildcards>.log``. When a job fails on a
:class:`~spinefx.errors.SpinefxError`, the user also sees its message (patient, file, fix) on the
console, without opening the log.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from spinefx.errors import SpinefxError

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# What a job's log records about the SLURM job it runs in: which job, where, and the CPUs/GPUs it got.
SLURM_VARIABLES = (
    "SLURM_JOB_ID",
    "SLURM_JOB_PARTITION",
    "SLURMD_NODENAME",
    "SLURM_CPUS_PER_TASK",
    "SLURM_JOB_GPUS",
    "SLURM_STEP_GPUS",
    "CUDA_VISIBLE_DEVICES",
)


def slurm_context(environ: Mapping[str, str]) -> str | None:
    """One line naming the SLURM job and the GPUs it was given, or None outside SLURM, so a log shows
    whether a GPU request arrived."""
    if "SLURM_JOB_ID" not in environ:
        return None
    return "SLURM job: " + " ".join(f"{k}={environ.get(k, '-')}" for k in SLURM_VARIABLES)


def software_context() -> str:
    """One line naming the Python that runs the step and the spinefx it imported (file and version), so a
    log shows whether a job ran in a container image's environment or on the checkout."""
    import spinefx

    return (
        f"software: python={sys.executable} ({sys.version.split()[0]}) "
        f"spinefx={spinefx.__version__} from {Path(spinefx.__file__).parent}"
    )


def start(log_path: str | Path, name: str = "spinefx") -> logging.Logger:
    """Send stderr, warnings and logging to ``log_path``; return a logger for the script."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    console = sys.stderr
    handle = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    sys.stderr = handle
    logging.basicConfig(stream=handle, level=logging.INFO, format=FORMAT, force=True)
    logging.captureWarnings(True)
    warnings.simplefilter("default")

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        logging.getLogger(name).error("failed", exc_info=(kind, exc, tb))
        if isinstance(exc, SpinefxError):
            print(f"spinefx error: {exc} (log: {log_path})", file=console)
        handle.flush()

    sys.excepthook = hook
    logging.getLogger(name).info(software_context())
    context = slurm_context(os.environ)
    if context:
        logging.getLogger(name).info(context)
    return logging.getLogger(name)
