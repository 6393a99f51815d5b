"""The built-in demo cohort: synthetic sagittal spine MRI written as real DICOM, plus its sheets.

Why: a new user can run the whole workflow with no data, and every stage has a known answer
(labels, features, reader calls, the T1-to-T2 misalignment). Each patient's fracture is drawn
from the paper's 15 imaging features at the published per-class rates; the features, not the
label, drive the pixels. Same arguments, same bytes.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from spinefx.atomic import atomic_dir, atomic_path
from spinefx.demo import phantom
from spinefx.dicom.convert import read_series
from spinefx.dicom.write import SeriesGeometry, SeriesInfo, make_uid, write_series
from spinefx.errors import SpinefxError
from spinefx.features import (
    DEMO_READERS,
    FEATURES,
    LABELS,
    paper_rate,
    reader_sensitivity_specificity,
)
from spinefx.seeding import stable_seed

DEFAULT_NOISE = 0.03  # Rician noise sd as a fraction of the fat signal (SNR ~33 on fat, ~20 on marrow)

# Sagittal slices: columns run posterior (+y), rows run inferior (-z), slices toward patient right.
ROW_DIR = (0.0, 1.0, 0.0)
COL_DIR = (0.0, 0.0, -1.0)


@dataclass(frozen=True)
class SeriesSpec:
    """One series' grid: reconstructed matrix (rows x cols), spacing (mm), slices, acquisition matrix."""

    rows: int
    cols: int
    pixel_mm: tuple[float, float]
    slices: int
    slice_mm: float
    acquisition: tuple[int, int]
    thickness_mm: float | None = None  # slice thickness when not slice_mm (a gap between slices)


# default: small enough for the whole workflow on 2 cores; T2 at 1.0 mm keeps the vertebral body
# box ~40 px wide; T1 at 1.2 mm (coarser, different matrix and FOV, as on a scanner). Phase
# encoding (columns, anterior-posterior) is acquired at 5/6 and zero-filled, as scanners do.
# As on a scanner the T1 slab is planned on its own: 13 slices 3.5 mm thick every 4 mm (T2: 12
# contiguous 4 mm slices), its FOV centre offset from T2's (T1_FOV_OFFSET_MM), so the slice positions
# and FOV differ and only the scanner frame says where the two series meet.
GEOMETRIES: dict[str, dict[str, SeriesSpec]] = {
    "default": {
        "t1": SeriesSpec(192, 160, (1.2, 1.2), 13, 4.0, (192, 128), thickness_mm=3.5),
        "t2": SeriesSpec(224, 192, (1.0, 1.0), 12, 4.0, (224, 160)),
    },
    # the paper: FOV 300 mm, 4 mm slices, T1 320x192 and T2 448x224 reconstructed to 512x512
    "paper": {
        "t1": SeriesSpec(512, 512, (300 / 512, 300 / 512), 13, 4.0, (320, 192)),
        "t2": SeriesSpec(512, 512, (300 / 512, 300 / 512), 13, 4.0, (448, 224)),
    },
}

SEQUENCES = {"t1": phantom.T1W, "t2": phantom.T2W}
SERIES = {
    "t1": {"description": "SAG T1 SE", "number": 3, "slope": 2.0, "intercept": 0.0},
    "t2": {"description": "SAG T2 FSE", "number": 4, "slope": 0.5, "intercept": -100.0},
}
BOX_MARGIN_MM = 4.0
# Offset of the T1 FOV centre from the T2 one (LPS mm), drawn per patient: left-right (slice
# direction) up to this, anterior-posterior up to this, superior-inferior this range with either sign.
T1_FOV_OFFSET_MM = {"lr": 2.0, "ap": 8.0, "si": (10.0, 30.0)}

# ---------------------------------------------------------------------------------------------
# Labels, features, readers


def assign_labels(
    n_patients: int, seed: int, malignant_fraction: float, id_prefix: str = "demo_"
) -> dict[str, str]:
    """demo_001.. (``id_prefix`` + number) -> label: exactly round(n * fraction) malignant (at least
    2 of each class)."""
    if n_patients < 4:
        raise SpinefxError(
            f"the demo cohort needs at least 4 patients (2 per class), got {n_patients}",
            fix="set demo.n_patients to 4 or more",
        )
    n_mal = int(min(max(round(n_patients * malignant_fraction), 2), n_patients - 2))
    order = np.random.default_rng([seed, stable_seed("labels", n_patients)]).permutation(n_patients)
    labels = {}
    for rank, i in enumerate(order):
        labels[patient_id(int(i) + 1, id_prefix)] = "malignant" if rank < n_mal else "benign"
    return dict(sorted(labels.items()))


def patient_id(i: int, id_prefix: str = "demo_") -> str:
    return f"{id_prefix}{i:03d}"


_COLLAPSE = ("anterior_wedge_deformity", "compression_of_entire_body", "central_concave_deformity")
_NEEDS_ABNORMAL_MARROW = ("intravertebral_dark_patch", "fluid_or_necrotic_cleft", "intravertebral_mass")


@functools.cache
def _collapse_q(label: str) -> tuple[np.ndarray, np.ndarray]:
    targets = np.array([paper_rate(f, label) for f in _COLLAPSE]) / (
        1 - paper_rate("absence_of_collapse", label)
    )
    return targets, _at_least_one_q(targets)


def _at_least_one_q(targets: np.ndarray) -> np.ndarray:
    """Bernoulli probabilities q such that, conditioned on at least one success, P(i) = targets[i]."""
    t = np.minimum(targets, 1.0)
    if t.sum() < 1.0:  # cannot be matched; independent draws are the best approximation
        return t
    q = t.copy()
    for _ in range(200):
        q = np.minimum(t * (1 - np.prod(1 - q)), 1.0)
    return q


def draw_features(rng: np.random.Generator, label: str) -> dict[str, int]:
    """The 15 Table 1 features of one patient, coherent and with the paper's per-class marginals.

    Collapse: absence_of_collapse excludes the three deformity types, and a collapsed body has
    at least one of them. Marrow: homogeneous_marrow_signal excludes diffuse change, band edema,
    dark patch, cleft and mass; diffuse change and band-pattern edema exclude each other. The
    conditional probabilities are chosen so each marginal equals the published rate.
    """
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, got {label!r}")
    p = {f: paper_rate(f, label) for f in FEATURES}
    out = dict.fromkeys(FEATURES, 0)
    # collapse group
    if rng.random() < p["absence_of_collapse"]:
        out["absence_of_collapse"] = 1
    else:
        targets, q = _collapse_q(label)
        while True:
            hits = rng.random(len(_COLLAPSE)) < q
            if hits.any() or targets.sum() < 1.0:
                break
        for f, h in zip(_COLLAPSE, hits, strict=True):
            out[f] = int(h)
    # marrow group
    ph = p["homogeneous_marrow_signal"]
    if rng.random() < ph:
        out["homogeneous_marrow_signal"] = 1
    else:
        pd_, pb = p["diffuse_signal_change"] / (1 - ph), p["band_pattern_edema"] / (1 - ph)
        r = rng.random()
        if pd_ + pb <= 1.0:
            out["diffuse_signal_change"] = int(r < pd_)
            out["band_pattern_edema"] = int(pd_ <= r < pd_ + pb)
        else:
            out["diffuse_signal_change"] = int(r < pd_)
            out["band_pattern_edema"] = int(rng.random() < pb)
        for f in _NEEDS_ABNORMAL_MARROW:
            out[f] = int(rng.random() < min(p[f] / (1 - ph), 1.0))
    for f in (
        "intravertebral_dark_line",
        "vertebral_body_protrusion",
        "epidural_paraspinal_mass",
        "pedicle_posterior_involvement",
        "skipped_lesion_other_vertebra",
    ):
        out[f] = int(rng.random() < p[f])
    return out


def draw_reader_calls(
    labels: Mapping[str, str], features: Mapping[str, Mapping[str, int]], seed: int
) -> pd.DataFrame:
    """Reader calls at each paper reader's sensitivity/specificity.

    The first-year resident's false positives follow the features the paper found behind them
    (heterogeneous marrow, diffuse signal change, band-pattern edema), scaled so the expected
    specificity over the cohort's benign patients is the published one.
    """
    rng = np.random.default_rng([seed, stable_seed("readers")])
    ids = sorted(labels)
    benign = [i for i in ids if labels[i] == "benign"]

    def r1_weight(f: Mapping[str, int]) -> float:
        w = 0.25 if f["homogeneous_marrow_signal"] else 1.0
        w *= 1.8 if f["diffuse_signal_change"] else 1.0
        return w * (1.6 if f["band_pattern_edema"] else 1.0)

    rows = []
    for reader, paper_name in DEMO_READERS.items():
        sens, spec = reader_sensitivity_specificity(paper_name)
        fp_scale = None
        if reader == "r1" and benign:
            fp_scale = (1 - spec) * len(benign) / sum(r1_weight(features[i]) for i in benign)
        for pid in ids:
            u = rng.random()
            if labels[pid] == "malignant":
                call = "malignant" if u < sens else "benign"
            else:
                p_fp = 1 - spec if fp_scale is None else min(1.0, fp_scale * r1_weight(features[pid]))
                call = "malignant" if u < p_fp else "benign"
            rows.append((pid, reader, call))
    df = pd.DataFrame(rows, columns=["patient_id", "reader", "call"])
    order = {r: i for i, r in enumerate(DEMO_READERS)}
    return df.sort_values(["patient_id", "reader"], key=lambda c: c.map(order) if c.name == "reader" else c)


# ---------------------------------------------------------------------------------------------
# PHI (fake but realistic) — written into DICOM headers only, never to a sheet or log.

_GIVEN_F = ("MEI-LING", "SHU-FEN", "YA-TING", "HUI-CHEN", "MARY", "ANNA", "LINDA", "CHUN-HUA", "LI-HUA")
_GIVEN_M = ("CHIH-MING", "JIAN-HONG", "WEN-CHENG", "JOHN", "DAVID", "ROBERT", "KUO-HUA", "TSUNG-HAN")
_FAMILY = ("CHEN", "LIN", "HUANG", "CHANG", "LEE", "WANG", "WU", "LIU", "TSAI", "YANG", "SMITH", "HSU")
_INSTITUTIONS = (
    "TAICHUNG VETERANS GENERAL HOSPITAL",
    "LAKESIDE UNIVERSITY MEDICAL CENTER",
    "ST. EXAMPLE HOSPITAL",
)
_PHYS = ("WU^CHIEN-HUNG^^DR", "CHANG^LI-REN^^DR", "MILLER^SARAH^^DR", "HUANG^YU-TING^^DR")


def _phi_rng(seed: int, pid: str) -> np.random.Generator:
    return np.random.default_rng([seed, stable_seed("phi", pid)])


def demo_study_date(seed: int, patient_id: str) -> str:
    """Study date (YYYYMMDD) of a demo patient, within the paper's four-year window."""
    rng = np.random.default_rng([seed, stable_seed("study-date", patient_id)])
    day = np.datetime64("2016-01-01") + int(rng.integers(0, 4 * 365))
    return str(day).replace("-", "")


def demo_phi(seed: int, patient_id: str) -> dict[str, str]:
    """Fake PHI written into every header of one demo patient (deterministic, so a privacy test can
    recompute it without any file listing it)."""
    rng = _phi_rng(seed, patient_id)
    sex = "F" if rng.random() < 0.5 else "M"
    given = rng.choice(_GIVEN_F if sex == "F" else _GIVEN_M)
    family = rng.choice(_FAMILY)
    age = int(np.clip(round(rng.normal(66.5, 13)), 23, 95))
    study = np.datetime64(
        f"{demo_study_date(seed, patient_id)[:4]}-{demo_study_date(seed, patient_id)[4:6]}-"
        f"{demo_study_date(seed, patient_id)[6:]}"
    )
    birth = study - np.timedelta64(int(age * 365.25 + rng.integers(1, 360)), "D")
    return {
        "PatientName": f"{family}^{given}",
        "PatientID": f"{int(rng.integers(10**6, 10**7)):07d}{int(rng.integers(0, 10))}",
        "PatientBirthDate": str(birth).replace("-", ""),
        "PatientSex": sex,
        "PatientAge": f"{age:03d}Y",
        "AccessionNumber": f"RA{int(rng.integers(10**8, 10**9))}",
        "InstitutionName": str(rng.choice(_INSTITUTIONS)),
        "ReferringPhysicianName": str(rng.choice(_PHYS)),
    }


# ---------------------------------------------------------------------------------------------
# One patient: plan (anatomy, grids, motion), render, box


@dataclass
class DemoPatient:
    patient_id: str
    label: str
    features: dict[str, int]
    anatomy: phantom.Anatomy
    grids: dict[str, SeriesGeometry]
    specs: dict[str, SeriesSpec]
    rotation_deg: tuple[float, float, float]
    translation_mm: tuple[float, float, float]
    centre_mm: tuple[float, float, float]
    bias: dict[str, np.ndarray]

    def transform(self) -> sitk.Euler3DTransform:
        """T2 physical -> T1 physical (the registration's convention)."""
        return _euler(self.rotation_deg, self.translation_mm, self.centre_mm)


def _euler(rot_deg, t_mm, c_mm) -> sitk.Euler3DTransform:
    tf = sitk.Euler3DTransform()
    tf.SetCenter([float(v) for v in c_mm])
    tf.SetRotation(*[float(np.deg2rad(a)) for a in rot_deg])
    tf.SetTranslation([float(v) for v in t_mm])
    return tf


def _grid(spec: SeriesSpec, centre: np.ndarray) -> SeriesGeometry:
    row, col = np.asarray(ROW_DIR), np.asarray(COL_DIR)
    normal = np.cross(row, col)
    half = (
        (spec.cols - 1) / 2 * spec.pixel_mm[1] * row
        + (spec.rows - 1) / 2 * spec.pixel_mm[0] * col
        + (spec.slices - 1) / 2 * spec.slice_mm * normal
    )
    origin = np.round(centre - half, 4)
    return SeriesGeometry(
        origin=tuple(float(v) for v in origin),
        row_dir=ROW_DIR,
        col_dir=COL_DIR,
        normal=tuple(float(v) for v in normal),
        pixel_spacing=spec.pixel_mm,
        slice_spacing=spec.slice_mm,
        slice_thickness=spec.thickness_mm or spec.slice_mm,
        shape=(spec.slices, spec.rows, spec.cols),
    )


def t1_fov_offset(seed: int, pid: str) -> np.ndarray:
    """Where the T1 FOV centre sits relative to the T2 one (LPS mm): its own seeded stream, so the
    anatomy, motion and noise of a patient do not depend on it."""
    rng = np.random.default_rng([seed, stable_seed("t1_fov", pid)])
    lr, ap, (si_lo, si_hi) = T1_FOV_OFFSET_MM["lr"], T1_FOV_OFFSET_MM["ap"], T1_FOV_OFFSET_MM["si"]
    si = rng.uniform(si_lo, si_hi) * rng.choice([-1.0, 1.0])
    return np.round(np.array([rng.uniform(-lr, lr), rng.uniform(-ap, ap), si]), 2)


def plan_patient(
    seed: int,
    pid: str,
    label: str,
    *,
    geometry: str = "default",
    misalignment_mm: float = 3.0,
    misalignment_deg: float = 3.0,
    features: Mapping[str, int] | None = None,
) -> DemoPatient:
    """Everything random about one patient, from independent seeded streams."""
    if geometry not in GEOMETRIES:
        raise SpinefxError(
            f"unknown demo geometry {geometry!r}", fix=f"set demo.geometry to one of {sorted(GEOMETRIES)}"
        )
    if features is None:
        features = draw_features(np.random.default_rng([seed, stable_seed("features", pid)]), label)
    anat = phantom.sample_anatomy(np.random.default_rng([seed, stable_seed("anatomy", pid)]), features)
    rng = np.random.default_rng([seed, stable_seed("placement", pid)])
    centre = np.round(np.array([rng.uniform(-5, 5), rng.uniform(-30, 10), rng.uniform(-40, 40)]), 2)
    # lesion body slightly anterior of the FOV centre, near the middle of the slab
    anat.anchor = centre + np.array([rng.uniform(-2, 2), rng.uniform(-20, -10), rng.uniform(-12, 12)])
    rot = tuple(float(round(v, 4)) for v in rng.uniform(-misalignment_deg, misalignment_deg, 3))
    trans = tuple(float(round(v, 4)) for v in rng.uniform(-misalignment_mm, misalignment_mm, 3))
    bias = {
        s: np.array(
            [rng.uniform(0.2, 0.5), rng.uniform(0.3, 0.8), rng.uniform(-0.1, 0.1), rng.uniform(0, 0.6)]
        )
        for s in ("t1", "t2")
    }
    specs = GEOMETRIES[geometry]
    return DemoPatient(
        patient_id=pid,
        label=label,
        features=dict(features),
        anatomy=anat,
        grids={"t1": _grid(specs["t1"], centre + t1_fov_offset(seed, pid)), "t2": _grid(specs["t2"], centre)},
        specs=dict(specs),
        rotation_deg=rot,
        translation_mm=trans,
        centre_mm=tuple(float(v) for v in centre),
        bias=bias,
    )


def scanner_to_anatomy(p: DemoPatient) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) with anatomy point = A q + b for a T1 scanner point q: the inverse truth transform."""
    tf = p.transform()
    m = np.array(tf.GetMatrix()).reshape(3, 3)
    c = np.asarray(p.centre_mm)
    t = np.asarray(tf.GetTranslation())
    a = m.T
    return a, c - a @ (c + t)


def render_patient(
    p: DemoPatient, *, seed: int, noise: float = DEFAULT_NOISE, subsamples: int = 3
) -> dict[str, np.ndarray]:
    """T1 and T2 volumes [slices, rows, cols] (real-world values) of one planned patient."""
    rng = np.random.default_rng([seed, stable_seed("noise", p.patient_id)])
    out = {}
    for s in ("t2", "t1"):
        out[s] = phantom.render(
            p.anatomy,
            p.grids[s],
            SEQUENCES[s],
            scanner_to_anatomy=scanner_to_anatomy(p) if s == "t1" else None,
            subsamples=subsamples,
            noise=noise,
            rng=rng,
            bias=p.bias[s],
            acquisition_matrix=p.specs[s].acquisition,
        )
    return out


def lesion_slice(p: DemoPatient) -> int:
    """T2 slice index k (0-based, in slice order) through the lesion body centre."""
    k = int(np.rint(p.grids["t2"].index_of(p.anatomy.anchor)[0]))
    return int(np.clip(k, 1, p.grids["t2"].shape[0] - 2))


def lesion_box(p: DemoPatient) -> tuple[int, int, int, int]:
    """Square-ish box (x0, y0, x1, y1; columns/rows, x1/y1 exclusive) around the whole lesion body
    on the T2 lesion slice and its neighbours, with a small margin."""
    g = p.grids["t2"]
    k = lesion_slice(p)
    pts = np.concatenate([g.points(kk)[0] for kk in (k - 1, k, k + 1)], axis=0)
    mask = phantom.lesion_body_mask(p.anatomy, pts)
    rows = np.flatnonzero(mask.any(axis=1)) % g.shape[1]
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise RuntimeError(f"{p.patient_id}: lesion body not on the T2 lesion slice")
    mr = BOX_MARGIN_MM / g.pixel_spacing[0]
    mc = BOX_MARGIN_MM / g.pixel_spacing[1]
    y0, y1 = rows.min() - mr, rows.max() + 1 + mr
    x0, x1 = cols.min() - mc, cols.max() + 1 + mc
    side = max(y1 - y0, x1 - x0)
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    y0, y1 = int(np.floor(cy - side / 2)), int(np.ceil(cy + side / 2))
    x0, x1 = int(np.floor(cx - side / 2)), int(np.ceil(cx + side / 2))
    nr, nc = g.shape[1:]
    return max(x0, 0), max(y0, 0), min(x1, nc), min(y1, nr)


def visible_vertebra_centres(p: DemoPatient, margin_px: float = 8.0) -> np.ndarray:
    """Vertebral body centres (T2 LPS mm) inside both fields of view (T1 after the motion)."""
    centres = phantom.vertebra_centres(p.anatomy)
    tf = p.transform()
    keep = []
    for c in centres:
        ok = True
        for s, pt in (("t2", c), ("t1", np.array(tf.TransformPoint([float(v) for v in c])))):
            g = p.grids[s]
            k, r, cc = g.index_of(pt)
            ok &= bool(0 <= k <= g.shape[0] - 1)
            ok &= bool(
                margin_px <= r <= g.shape[1] - 1 - margin_px and margin_px <= cc <= g.shape[2] - 1 - margin_px
            )
        if ok:
            keep.append(c)
    return np.array(keep).reshape(-1, 3)


# ---------------------------------------------------------------------------------------------
# Writing


def _series_info(seed: int, p: DemoPatient, s: str) -> SeriesInfo:
    study = make_uid("spinefx-demo", seed, p.patient_id, "study")
    seq = SEQUENCES[s]
    spec = p.specs[s]
    return SeriesInfo(
        series_description=SERIES[s]["description"],
        series_number=SERIES[s]["number"],
        study_uid=study,
        frame_of_reference_uid=make_uid("spinefx-demo", seed, p.patient_id, "frame"),
        series_uid=make_uid("spinefx-demo", seed, p.patient_id, s),
        repetition_time=seq.repetition_time_ms,
        echo_time=seq.echo_time_ms,
        field_strength=1.5,
        scanning_sequence="SE",
        patient=demo_phi(seed, p.patient_id),
        acquisition_matrix=spec.acquisition,
        manufacturer="GE MEDICAL SYSTEMS (spinefx phantom)",
        study_date=demo_study_date(seed, p.patient_id),
    )


def _fmt(v: float) -> str:
    return f"{float(v):.4f}"


@dataclass(frozen=True)
class DemoCohortFiles:
    """Where a demo cohort goes: the patient sheet, the three companion sheets and the DICOM tree.
    The sheet's ``t1_dicom``/``t2_dicom`` are written relative to the sheet's folder, as sheets are read."""

    sheet: Path
    features: Path
    readers: Path
    truth: Path
    dicom: Path

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The field names, which are also the rules' output names."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def under(cls, folder: str | Path) -> DemoCohortFiles:
        """The standard names in one folder: patients/features/readers/truth.tsv and dicom/."""
        folder = Path(folder)
        return cls(
            sheet=folder / "patients.tsv",
            features=folder / "features.tsv",
            readers=folder / "readers.tsv",
            truth=folder / "truth.tsv",
            dicom=folder / "dicom",
        )


def write_demo_cohort(
    out: str | Path | DemoCohortFiles,
    *,
    n_patients: int,
    seed: int,
    geometry: str,
    malignant_fraction: float = 50 / 190,
    misalignment_mm: float = 3.0,
    misalignment_deg: float = 3.0,
    noise: float = DEFAULT_NOISE,
    id_prefix: str = "demo_",
) -> None:
    """Write {dicom}/{pid}/{t1,t2}/*.dcm and the four sheets to ``out``: explicit
    :class:`DemoCohortFiles` (what a rule declares) or a folder for the standard names.
    Patient ids are ``id_prefix`` + a number (``new_`` for the held-aside patients of the demo).

    Atomic: the DICOM tree is built in a temporary folder beside ``dicom`` and moved into place,
    then each sheet is written under a temporary name and renamed. One stderr line per patient.
    """
    files = out if isinstance(out, DemoCohortFiles) else DemoCohortFiles.under(out)
    sheet_dir = files.sheet.parent
    labels = assign_labels(n_patients, seed, malignant_fraction, id_prefix)
    patients, feats, truth = [], [], []
    t_start = time.perf_counter()
    with atomic_dir(files.dicom) as dicom_tmp:
        for i, (pid, label) in enumerate(labels.items(), start=1):
            t0 = time.perf_counter()
            p = plan_patient(
                seed,
                pid,
                label,
                geometry=geometry,
                misalignment_mm=misalignment_mm,
                misalignment_deg=misalignment_deg,
            )
            vols = render_patient(p, seed=seed, noise=noise)
            uids = {}
            for s in ("t1", "t2"):
                info = _series_info(seed, p, s)
                write_series(
                    vols[s],
                    dicom_tmp / pid / s,
                    p.grids[s],
                    info,
                    rescale_slope=SERIES[s]["slope"],
                    rescale_intercept=SERIES[s]["intercept"],
                )
                uids[s] = info.series_uid
            k = lesion_slice(p)
            x0, y0, x1, y1 = lesion_box(p)
            patients.append(
                {
                    "patient_id": pid,
                    "label": label,
                    "t1_dicom": _relative(files.dicom / pid / "t1", sheet_dir),
                    "t2_dicom": _relative(files.dicom / pid / "t2", sheet_dir),
                    "lesion_instance": k + 1,
                    "box_x0": x0,
                    "box_y0": y0,
                    "box_x1": x1,
                    "box_y1": y1,
                    "t1_series_uid": uids["t1"],
                    "t2_series_uid": uids["t2"],
                }
            )
            feats.append({"patient_id": pid, **{f: p.features[f] for f in FEATURES}})
            centres = visible_vertebra_centres(p)
            truth.append(
                {
                    "patient_id": pid,
                    "label": label,
                    **{f"rot_{a}_deg": _fmt(v) for a, v in zip("xyz", p.rotation_deg, strict=True)},
                    **{f"t{a}_mm": _fmt(v) for a, v in zip("xyz", p.translation_mm, strict=True)},
                    **{f"c{a}_mm": _fmt(v) for a, v in zip("xyz", p.centre_mm, strict=True)},
                    "vertebra_centers_mm": json.dumps([[round(float(v), 3) for v in c] for c in centres]),
                    "lesion_level": p.anatomy.levels[p.anatomy.lesion_index],
                    **{f: p.features[f] for f in FEATURES},
                }
            )
            print(
                f"demo {i}/{n_patients} {pid}: {label}, lesion {truth[-1]['lesion_level']}, "
                f"{time.perf_counter() - t0:.2f} s",
                file=sys.stderr,
                flush=True,
            )
    readers = draw_reader_calls(labels, {r["patient_id"]: r for r in feats}, seed)
    for path, df in (
        (files.sheet, pd.DataFrame(patients)),
        (files.features, pd.DataFrame(feats)),
        (files.readers, readers),
        (files.truth, pd.DataFrame(truth)),
    ):
        with atomic_path(path) as tmp:
            df.to_csv(tmp, sep="\t", index=False, lineterminator="\n")
    print(
        f"demo cohort: {n_patients} patients in {time.perf_counter() - t_start:.1f} s -> {sheet_dir}",
        file=sys.stderr,
        flush=True,
    )


def _relative(path: Path, start: Path) -> str:
    """``path`` as the sheet names it: relative to the sheet's folder, with forward slashes."""
    return Path(os.path.relpath(path, start)).as_posix()


# ---------------------------------------------------------------------------------------------
# Truth, for the registration tests and benchmarks


def read_truth(path: str | Path) -> pd.DataFrame:
    """truth.tsv of a demo cohort (one row per patient; vertebra_centers_mm stays a JSON string)."""
    return pd.read_csv(path, sep="\t", dtype={"patient_id": str, "vertebra_centers_mm": str})


def truth_transform(row: Mapping) -> sitk.Euler3DTransform:
    """The true transform of one truth row: maps T2 physical LPS points to T1 physical points."""
    return _euler(
        [row[f"rot_{a}_deg"] for a in "xyz"],
        [row[f"t{a}_mm"] for a in "xyz"],
        [row[f"c{a}_mm"] for a in "xyz"],
    )


def vertebra_centers(row: Mapping) -> np.ndarray:
    """[n, 3] LPS mm (T2 physical space) centres of the vertebral bodies inside both fields of view."""
    return np.asarray(json.loads(row["vertebra_centers_mm"]), float).reshape(-1, 3)


# ---------------------------------------------------------------------------------------------
# Montage


def _montage_series(folder: Path, patient: str) -> tuple[np.ndarray, sitk.Image, list[int]]:
    """Volume [k, rows, cols] (rescaled), the image (for its geometry) and the InstanceNumber of each k,
    read through the converter, as the workflow reads them."""
    image, meta = read_series(folder, patient=patient)
    return sitk.GetArrayFromImage(image), image, [int(n) for n in meta["instance_numbers"]]


def box_in_t1(
    t2: sitk.Image, t1: sitk.Image, truth: sitk.Transform, k2: int, box: tuple[int, int, int, int]
) -> tuple[int, np.ndarray]:
    """The T2 box (pixel areas x0..x1, y0..y1 on slice k2) carried through the known motion onto T1:
    the nearest T1 slice and the four corners there, [4, 2] continuous (column, row) indices."""
    x0, y0, x1, y1 = (v - 0.5 for v in box)
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    mapped = []
    for x, y in corners:
        q = truth.TransformPoint(t2.TransformContinuousIndexToPhysicalPoint((float(x), float(y), float(k2))))
        mapped.append(t1.TransformPhysicalPointToContinuousIndex(q))
    mapped = np.asarray(mapped)
    k1 = int(np.clip(np.rint(mapped[:, 2].mean()), 0, t1.GetSize()[2] - 1))
    return k1, mapped[:, :2]


SHORT_NAMES: dict[str, str] = dict(
    zip(
        FEATURES,
        (
            "no collapse", "wedge", "compression", "concave", "homogeneous", "dark line", "band edema",
            "dark patch", "cleft", "diffuse", "mass", "protrusion", "epidural/paraspinal", "pedicle", "skip",
        ),
        strict=True,
    )
)  # fmt: skip


def write_montage(demo_dir: Path, out_png: Path, n: int = 4) -> None:
    """Lesion slice, T1 and T2 side by side, of the first ``n`` patients of each class, box drawn.

    The T1 panel is the T1 slice nearest the T2 box carried through the known motion (truth.tsv), with
    the box drawn where that motion puts it; T1 itself is not resampled. Each title lists the
    patient's features (truth.tsv).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon

    demo_dir = Path(demo_dir)
    sheet = pd.read_csv(demo_dir / "patients.tsv", sep="\t", dtype={"patient_id": str})
    truth = read_truth(demo_dir / "truth.tsv").set_index("patient_id")
    groups = [sheet[sheet.label == lab].head(n) for lab in ("benign", "malignant")]
    ncol = max(len(g) for g in groups)
    fig, axes = plt.subplots(2, 2 * ncol, figsize=(1.9 * 2 * ncol, 2 * 3.1), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for gi, group in enumerate(groups):
        for ci, row in enumerate(group.itertuples()):
            t2, img2, numbers2 = _montage_series(demo_dir / row.t2_dicom, row.patient_id)
            t1, img1, _ = _montage_series(demo_dir / row.t1_dicom, row.patient_id)
            k2 = numbers2.index(int(row.lesion_instance))  # the demo wrote it: present by construction
            box = (row.box_x0, row.box_y0, row.box_x1, row.box_y1)
            k1, c1 = box_in_t1(img2, img1, truth_transform(truth.loc[row.patient_id]), k2, box)
            b2 = (row.box_x0 - 0.5, row.box_y0 - 0.5, row.box_x1 - 0.5, row.box_y1 - 0.5)
            c2 = np.array([(b2[0], b2[1]), (b2[2], b2[1]), (b2[2], b2[3]), (b2[0], b2[3])])
            feats = truth.loc[row.patient_id]
            on = [SHORT_NAMES[f] for f in FEATURES if int(feats[f])]
            lines = [", ".join(on[i : i + 3]) for i in range(0, len(on), 3)]
            for si, (img, corners, name) in enumerate(((t1[k1], c1, "T1W"), (t2[k2], c2, "T2W"))):
                ax = axes[gi, 2 * ci + si]
                ax.set_axis_on()
                lo, hi = np.percentile(img, [1, 99.5])
                ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="bilinear")
                ax.add_patch(Polygon(corners, closed=True, fill=False, ec="#ffcc00", lw=0.8))
                ax.set_xticks([])
                ax.set_yticks([])
                ax.text(3, 12, name, color="w", fontsize=7)
                if si == 0:
                    title = f"{row.patient_id} {row.label}, {feats['lesion_level']}\n" + "\n".join(lines)
                    ax.set_title(title, fontsize=6.5, loc="left")
    fig.suptitle(
        "spinefx demo: lesion slice, T1W SE | T2W FSE, lesion box; top benign, bottom malignant",
        fontsize=9,
    )
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.86, wspace=0.04, hspace=0.32)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


__all__ = [
    "DEFAULT_NOISE",
    "GEOMETRIES",
    "assign_labels",
    "demo_phi",
    "draw_features",
    "draw_reader_calls",
    "plan_patient",
    "read_truth",
    "render_patient",
    "truth_transform",
    "vertebra_centers",
    "write_demo_cohort",
    "write_montage",
]
