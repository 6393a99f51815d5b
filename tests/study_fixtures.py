"""A study folder as a scanner exports it: localizer, sagittal T1W, T2W, STIR and axial T2 in one folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spinefx.dicom.write import SeriesGeometry, SeriesInfo, make_uid, write_series

SAG = {"row_dir": (0.0, 1.0, 0.0), "col_dir": (0.0, 0.0, -1.0)}  # normal -x: sagittal
AX = {"row_dir": (1.0, 0.0, 0.0), "col_dir": (0.0, 1.0, 0.0)}  # normal +z: axial
COR = {"row_dir": (1.0, 0.0, 0.0), "col_dir": (0.0, 0.0, -1.0)}  # normal +y: coronal
# name: (description, number, orientation, TR ms, TE ms, slices)
STUDY = {
    "loc": ("3-plane localizer", 1, COR, 8.0, 2.0, 3),
    "t1": ("SAG T1 TSE", 2, SAG, 550.0, 11.0, 8),
    "t2": ("SAG T2 TSE", 3, SAG, 3500.0, 100.0, 8),
    "stir": ("SAG STIR", 4, SAG, 4000.0, 70.0, 8),
    "ax": ("AX T2", 5, AX, 4200.0, 110.0, 6),
}


def write_study(folder: Path, seed: int = 0, shape: tuple[int, int] = (32, 32)) -> dict[str, str]:
    """Write every series of STUDY into ``folder`` (one flat folder, distinct file names); name -> uid."""
    rng = np.random.default_rng(seed)
    study = make_uid("study", seed)
    uids = {}
    for name, (desc, number, orient, tr, te, n) in STUDY.items():
        uid = make_uid("series", seed, name)
        info = SeriesInfo(
            series_description=desc,
            series_number=number,
            study_uid=study,
            frame_of_reference_uid=make_uid("for", seed),
            series_uid=uid,
            repetition_time=tr,
            echo_time=te,
        )
        geom = SeriesGeometry(
            origin=(0.0, -60.0, 60.0), pixel_spacing=(2.0, 2.0), slice_spacing=4.0, **orient
        )
        volume = rng.uniform(0, 1000, size=(n, *shape))
        write_series(volume, folder, geom, info, file_names=[f"{name}_{k:03d}.dcm" for k in range(n)])
        uids[name] = uid
    return uids
