"""One error type that tells a user which patient, which file, and what to do about it."""

from __future__ import annotations

from pathlib import Path


class SpinefxError(Exception):
    """An input problem a user can fix: carries the patient, the file and the fix.

    The message is built so that it reads well in a Snakemake log:
    ``patient demo_003: file results/demo/dicom/demo_003/t1: two series ... Fix: set t1_series_uid``.
    """

    def __init__(
        self,
        problem: str,
        *,
        patient: str | None = None,
        path: str | Path | None = None,
        fix: str | None = None,
    ) -> None:
        self.problem = problem
        self.patient = patient
        self.path = None if path is None else str(path)
        self.fix = fix
        super().__init__(self._message())

    def _message(self) -> str:
        parts = []
        if self.patient is not None:
            parts.append(f"patient {self.patient}")
        if self.path is not None:
            parts.append(f"file {self.path}")
        where = ": ".join(parts)
        text = f"{where}: {self.problem}" if where else self.problem
        if self.fix:
            text += f" Fix: {self.fix}"
        return text
