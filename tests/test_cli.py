"""`spinefx series FOLDER` lists a study folder's series and what the rules choose."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from study_fixtures import STUDY, write_study

from spinefx.cli import main


def test_series_lists_every_series_and_the_choice(tmp_path: Path, capsys) -> None:
    uids = write_study(tmp_path)
    assert main(["series", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{len(STUDY)} series in")
    for name, (desc, number, *_rest) in STUDY.items():
        assert uids[name] in out and desc in out and f"#{number}" in out
    assert "matrix=32x32" in out and "1.2.840.10008.1.2.1" in out  # explicit VR little endian
    assert f"t1: {uids['t1']}" in out and f"t2: {uids['t2']}" in out


def test_series_with_config_rules_that_fail(tmp_path: Path, capsys) -> None:
    write_study(tmp_path / "study")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("series:\n  t2: {plane: sagittal, tr: [1500, null]}\n")  # T2 and STIR both match
    assert main(["series", str(tmp_path / "study"), "--config", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert "t2: no choice: 2 series match" in out and "t1: 1." in out


def test_console_entry_reports_errors_in_one_line(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "spinefx.cli", "series", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "is not a folder" in run.stderr and "Traceback" not in run.stderr
