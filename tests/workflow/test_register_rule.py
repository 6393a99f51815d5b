"""Rule register_t1_to_t2 through Snakemake: a registration that fails its checks leaves qc.json and
qc.png where the user can look at them (the rule's log files), not only an error message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workflow_run import TINY, snakemake


@pytest.mark.slow  # ~40 s: demo cohort, two conversions and one registration through Snakemake
def test_failed_registration_keeps_its_qc_files(tmp_path: Path) -> None:
    strict = tmp_path / "strict.yaml"
    strict.write_text("registration: {max_translation_mm: 0.01}\n")  # every real motion exceeds this
    target = "results/registration/demo_001/qc.json"
    proc = snakemake(tmp_path, target, "--cores", "2", "--configfile", str(TINY), str(strict), check=False)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert not (tmp_path / target).exists(), "the outputs of a failed job are gone"
    assert not (tmp_path / "results/registration/demo_001/t1_to_t2.tfm").exists()
    logs = tmp_path / "logs" / "register_t1_to_t2"
    qc = json.loads((logs / "demo_001.qc.json").read_text())
    assert qc["status"] == "failed" and any("exceeds the limit 0.01 mm" in p for p in qc["problems"])
    assert (logs / "demo_001.qc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the message points at the picture that survived
    assert "logs/register_t1_to_t2/demo_001.qc.png" in (logs / "demo_001.log").read_text() + proc.stderr
