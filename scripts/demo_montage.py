"""Redraw docs/demo_montage.png (the README's picture of the demo) from the demo writer itself.

    PYTHONPATH=$PWD .venv/bin/python scripts/demo_montage.py [OUT_PNG]

Writes a small demo cohort with the demo config's seed and geometry to a temporary folder and draws
four patients of each class with spinefx.demo.cohort.write_montage. Rerun it when the demo changes.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import yaml

from spinefx.demo.cohort import write_demo_cohort, write_montage
from spinefx.settings import section_defaults

REPO = Path(__file__).resolve().parents[1]


def main(out_png: Path) -> None:
    demo = section_defaults("demo") | yaml.safe_load((REPO / "config/config.yaml").read_text())["demo"]
    with tempfile.TemporaryDirectory() as tmp:
        write_demo_cohort(
            Path(tmp),
            n_patients=16,
            seed=demo["seed"],
            geometry=demo["geometry"],
            malignant_fraction=0.5,
            misalignment_mm=demo["misalignment_mm"],
            misalignment_deg=demo["misalignment_deg"],
        )
        write_montage(Path(tmp), out_png, n=4)
    print(f"wrote {out_png}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "demo_montage.png")
