"""A sagittal spine MRI phantom defined analytically in continuous physical space (pure numpy).

Why analytic: the same patient can be sampled on any grid (the T2 grid, a moved T1 grid, a
512x512 reconstruction) with partial-volume averaging, so registration has a true answer and
every one of the paper's 15 imaging features can be switched on or off without moving anything
else. Coordinates are DICOM LPS millimetres; the anatomy lives in the T2 series' physical space.

Anatomy: 9-11 vertebral bodies along a circular lordotic/kyphotic curve (rounded boxes with a
dark cortical rim and fatty marrow), discs (annulus + nucleus), the thecal sac with CSF, cord and
cauda equina, posterior elements (pedicles, articular pillars, laminae, spinous processes),
epidural fat, paraspinal and psoas muscle, subcutaneous fat, retroperitoneal fat, aorta and bowel.
Contrast comes from a spin-echo signal equation with per-tissue PD/T1/T2 at 1.5 T.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from spinefx.dicom.write import SeriesGeometry

# ----------------------------------------------------------------------------------------------
# Tissues: proton density (relative), T1 (ms), T2 (ms) for spin echo, apparent T2 (ms) for FSE
# (J-coupling makes fat brighter on fast spin echo than its spin-echo T2 suggests).
TISSUES: dict[str, tuple[float, float, float, float]] = {
    "air": (0.0, 1000.0, 1.0, 1.0),
    "fat": (1.0, 260.0, 80.0, 140.0),
    "marrow": (0.85, 420.0, 60.0, 90.0),
    "cortex": (0.08, 1000.0, 5.0, 5.0),
    "muscle": (0.8, 900.0, 45.0, 45.0),
    "csf": (1.0, 3500.0, 2000.0, 2000.0),
    "cord": (0.8, 750.0, 85.0, 85.0),
    "nucleus": (0.9, 1100.0, 130.0, 130.0),
    "annulus": (0.7, 900.0, 45.0, 45.0),
    "edema": (0.95, 1300.0, 140.0, 140.0),
    "tumour": (0.9, 1000.0, 110.0, 110.0),
    "sclerosis": (0.25, 700.0, 25.0, 25.0),
    "fluid": (0.95, 3000.0, 1000.0, 1000.0),
    "flow_void": (0.05, 1000.0, 20.0, 20.0),
    "viscera": (0.8, 650.0, 70.0, 70.0),
    "nodule": (0.95, 1600.0, 160.0, 160.0),
    "hemangioma": (0.95, 350.0, 150.0, 150.0),
    "replaced": (0.92, 1150.0, 125.0, 125.0),  # per patient: between tumour and edema
    "modic": (0.9, 330.0, 70.0, 120.0),  # fatty degenerative endplate change (Modic II)
}
TISSUE_NAMES: tuple[str, ...] = tuple(TISSUES)
T = {name: i for i, name in enumerate(TISSUE_NAMES)}

# Typical adult body heights / depths / widths (mm) and disc heights below each level.
_LEVELS = [f"T{i}" for i in range(5, 13)] + [f"L{i}" for i in range(1, 6)] + ["S1", "S2", "S3", "S4"]
_HEIGHT = dict(
    zip(_LEVELS, [19, 20, 20.5, 21, 22, 23, 24, 25, 26, 27, 27.5, 27.5, 26, 25, 23, 20, 18], strict=True)
)
_DEPTH = dict(
    zip(_LEVELS, [25, 26, 27, 27.5, 28, 29, 30, 31, 32, 33, 34, 35, 35, 34, 30, 26, 22], strict=True)
)
_WIDTH = dict(zip(_LEVELS, [30, 31, 32, 34, 36, 38, 40, 42, 44, 46, 48, 50, 52, 50, 44, 38, 32], strict=True))
_DISC = dict(
    zip(_LEVELS, [4.5, 4.5, 5, 5, 5.5, 6, 6.5, 7.5, 8.5, 9.5, 10, 10.5, 10, 3, 2, 2, 2], strict=True)
)

LESION_LEVELS: tuple[str, ...] = ("T10", "T11", "T12", "L1", "L2", "L3", "L4")
_LESION_LEVEL_P = np.array([0.08, 0.14, 0.24, 0.24, 0.14, 0.10, 0.06])


@dataclass(frozen=True)
class Sequence:
    """Spin-echo timing (ms); ``fast_spin_echo`` switches fat to its FSE apparent T2."""

    name: str
    repetition_time_ms: float
    echo_time_ms: float
    fast_spin_echo: bool


T1W = Sequence("T1W SE", 400.0, 15.0, False)
T2W = Sequence("T2W FSE", 3200.0, 90.0, True)


@dataclass
class LesionDetails:
    """Every random detail of the lesion vertebra, drawn whether or not its feature is present,
    so switching one feature on or off changes nothing else in the image."""

    comp_factor: float  # remaining posterior height fraction with compression of the entire body
    mild_factor: float  # height fraction for a collapse without a named deformity type
    wedge_mm: float  # anterior height loss of an anterior wedge deformity
    concave_mm: float  # central depression of each endplate (central concave deformity)
    protrusion_mm: float  # posterior bulge of the posterior wall
    band_mm: float  # depth of band-pattern edema below the endplate
    line_depth_mm: float  # depth of the intravertebral dark line below the endplate
    cleft_depth_mm: float  # depth of the fluid cleft below the endplate
    superior: bool  # band/line/cleft under the superior (True) or inferior endplate
    patch: tuple[float, float, float, float]  # dark patch (x, v, u fractions, radius mm)
    mass: tuple[float, float, float, float]  # intravertebral nodule (x, v, u fractions, radius mm)
    mottle: np.ndarray  # [k, 4] heterogeneous-marrow spots (x, v, u fractions, radius mm)
    epidural_mm: tuple[float, float]  # epidural mass thickness, prevertebral mass thickness
    skip: list[tuple[int, float, float, float, float]]  # (level offset, x, v, u fractions, radius mm)


@dataclass
class Anatomy:
    """One patient's anatomy. Positions are relative to ``anchor`` (the lesion body centre, LPS mm)."""

    anchor: np.ndarray  # lesion vertebral body centre in T2 physical space (LPS mm)
    tilt_rad: float  # sagittal tilt of the spine about the left-right axis
    radius_mm: float  # signed radius of the spinal curve (+ lordosis, - kyphosis)
    levels: list[str]
    lesion_index: int
    height_mm: np.ndarray
    depth_mm: np.ndarray
    width_mm: np.ndarray
    disc_mm: np.ndarray  # disc below each level
    nucleus_scale: np.ndarray  # per disc, T2 brightness of the nucleus (degeneration < 1)
    marrow_scale: np.ndarray  # per level, marrow brightness
    canal_half_mm: tuple[float, float]  # thecal sac half width (x) and half depth (v)
    canal_gap_mm: float  # anterior epidural space between body and sac
    conus_offset_mm: float  # conus medullaris tip relative to the lower third of L1 (s, mm)
    mean_half_depth_mm: float  # typical half depth of the bodies: places canal and soft tissues
    skin_v_mm: float  # posterior skin line (v)
    subcut_mm: float  # posterior subcutaneous fat thickness
    aorta: tuple[float, float, float]  # x, v (relative to the front of the bodies), radius mm
    bowel_phase: np.ndarray  # 3 phases of the bowel texture
    tissue_table: np.ndarray  # [n_tissues, 4] PD, T1, T2, T2 FSE
    features: dict[str, int]
    lesion: LesionDetails
    hemangioma: tuple[int, float, float, float, float] | None  # (level offset, x, v, u fr., radius)
    modic: tuple[int, bool] | None  # (level offset, superior endplate)

    def with_features(self, **changes: int) -> Anatomy:
        """The same patient with some features switched (for tests and figures)."""
        feats = dict(self.features)
        feats.update({k: int(v) for k, v in changes.items()})
        return dataclasses.replace(self, features=feats)


def sample_anatomy(
    rng: np.random.Generator, features: Mapping[str, int], *, lesion_level: str | None = None
) -> Anatomy:
    """Draw a patient: sizes, curvature, tissues and every lesion detail (label-independent)."""
    if lesion_level is None:
        lesion_level = str(rng.choice(LESION_LEVELS, p=_LESION_LEVEL_P / _LESION_LEVEL_P.sum()))
    li = _LEVELS.index(lesion_level)
    lo, hi = max(0, li - 5), min(len(_LEVELS), li + 6)
    levels = _LEVELS[lo:hi]
    n = len(levels)
    size = float(np.clip(rng.normal(1.0, 0.05), 0.88, 1.12))
    jitter = lambda sd: np.clip(rng.normal(1.0, sd, n), 1 - 2.5 * sd, 1 + 2.5 * sd)  # noqa: E731
    height = np.array([_HEIGHT[lv] for lv in levels]) * size * jitter(0.03)
    depth = np.array([_DEPTH[lv] for lv in levels]) * size * jitter(0.03)
    width = np.array([_WIDTH[lv] for lv in levels]) * size * jitter(0.03)
    disc = np.array([_DISC[lv] for lv in levels]) * size * jitter(0.08)
    nucleus = np.clip(rng.normal(0.9, 0.2, n), 0.35, 1.1)
    marrow = np.clip(rng.normal(1.0, 0.04, n), 0.9, 1.1)

    # Tissue properties vary a little between patients (scanner, age, hydration).
    table = np.array([TISSUES[t] for t in TISSUE_NAMES], dtype=float)
    table[:, 0] *= np.exp(rng.normal(0, 0.03, len(table)))
    table[:, 1:] *= np.exp(rng.normal(0, 0.05, (len(table), 1)))
    mix = rng.uniform(0.0, 1.0)  # diffuse replacement: 0 = tumour-like, 1 = edema-like
    table[T["replaced"]] = (1 - mix) * table[T["tumour"]] + mix * table[T["edema"]]
    table[T["marrow"], 1] *= rng.uniform(0.9, 1.15)  # fattier or redder marrow (age)

    li_local = levels.index(lesion_level)

    def spot(rmin: float, rmax: float, spread: float = 0.45) -> tuple[float, float, float, float]:
        x, v, u = rng.uniform(-spread, spread, 3)
        return float(x), float(v), float(u) * 0.6, float(rng.uniform(rmin, rmax))

    offsets = [o for o in (-3, -2, -1, 1, 2, 3) if 0 <= li_local + o < n]
    n_skip = int(rng.integers(1, 4))
    skip_off = rng.choice(offsets, size=min(n_skip, len(offsets)), replace=False)
    skip = [(int(o), *spot(4.0, 8.0, 0.4)) for o in sorted(skip_off)]
    mottle = np.array([spot(2.0, 4.5, 0.65) for _ in range(int(rng.integers(5, 9)))])
    lesion = LesionDetails(
        comp_factor=float(rng.uniform(0.58, 0.72)),
        mild_factor=float(rng.uniform(0.85, 0.9)),
        wedge_mm=float(rng.uniform(0.3, 0.45) * height[li_local]),
        concave_mm=float(rng.uniform(0.14, 0.22) * height[li_local]),
        protrusion_mm=float(rng.uniform(3.5, 6.0)),
        band_mm=float(rng.uniform(6.0, 10.0)),
        line_depth_mm=float(rng.uniform(3.0, 6.0)),
        cleft_depth_mm=float(rng.uniform(2.0, 4.0)),
        superior=bool(rng.random() < 0.8),
        patch=spot(5.0, 8.0, 0.35),
        mass=spot(6.0, 9.0, 0.3),
        mottle=mottle,
        epidural_mm=(float(rng.uniform(5.0, 8.0)), float(rng.uniform(5.0, 9.0))),
        skip=skip,
    )
    others = [o for o in range(-3, 4) if o != 0 and 0 <= li_local + o < n]
    hem = None
    if rng.random() < 0.25:
        hem = (int(rng.choice(others)), *spot(4.0, 8.0, 0.4))
    modic = None
    if rng.random() < 0.3:
        modic = (int(rng.choice(others)), bool(rng.random() < 0.5))
    radius = 1.0 / rng.uniform(-1 / 800, 1 / 380)
    if abs(radius) > 3000:
        radius = float(np.copysign(3000.0, radius))
    mean_half_depth = float(np.median(depth)) / 2
    return Anatomy(
        anchor=np.zeros(3),
        tilt_rad=float(np.deg2rad(rng.uniform(-6, 6))),
        radius_mm=float(radius),
        levels=list(levels),
        lesion_index=li_local,
        height_mm=height,
        depth_mm=depth,
        width_mm=width,
        disc_mm=disc,
        nucleus_scale=nucleus,
        marrow_scale=marrow,
        canal_half_mm=(float(rng.uniform(10, 12.5)), float(rng.uniform(6.5, 8.5))),
        canal_gap_mm=float(rng.uniform(1.5, 3.0)),
        conus_offset_mm=float(rng.normal(0, 8)),
        mean_half_depth_mm=mean_half_depth,
        skin_v_mm=float(mean_half_depth + rng.uniform(62, 80)),
        subcut_mm=float(rng.uniform(10, 28)),
        aorta=(float(rng.uniform(8, 16)), float(rng.uniform(10, 14)), float(rng.uniform(8, 11))),
        bowel_phase=rng.uniform(0, 2 * np.pi, 3),
        tissue_table=table,
        features={k: int(v) for k, v in features.items()},
        lesion=lesion,
        hemangioma=hem,
        modic=modic,
    )


# ----------------------------------------------------------------------------------------------
# Layout along the spine (depends on the collapse features, hence computed at render time).


@dataclass
class Layout:
    s: np.ndarray  # body centres along the spine (mm), level 0 on top (largest s)
    bounds: np.ndarray  # ascending cell boundaries (mid-disc) for searchsorted
    half: np.ndarray  # effective half height of each body (the lesion's posterior wall)
    lesion_top: float  # half height kept by the lesion's posterior wall
    conus_s: float


def _feat(anat: Anatomy, name: str) -> bool:
    return bool(anat.features.get(name, 0))


def _collapsed(anat: Anatomy) -> bool:
    return not _feat(anat, "absence_of_collapse")


def _lesion_half_height(anat: Anatomy) -> float:
    """Half height of the lesion body at its posterior wall (what sets the spacing)."""
    h = anat.height_mm[anat.lesion_index] / 2
    if _feat(anat, "compression_of_entire_body"):
        return h * anat.lesion.comp_factor
    if _collapsed(anat) and not any(
        _feat(anat, f) for f in ("anterior_wedge_deformity", "central_concave_deformity")
    ):
        return h * anat.lesion.mild_factor
    return h


def layout(anat: Anatomy) -> Layout:
    n = len(anat.levels)
    li = anat.lesion_index
    half = anat.height_mm / 2
    half_eff = half.copy()
    half_eff[li] = _lesion_half_height(anat)
    s = np.zeros(n)
    for j in range(li - 1, -1, -1):  # levels above
        s[j] = s[j + 1] + half_eff[j + 1] + anat.disc_mm[j] + half_eff[j]
    for j in range(li + 1, n):
        s[j] = s[j - 1] - half_eff[j - 1] - anat.disc_mm[j - 1] - half_eff[j]
    mids = np.array([(s[j] - half_eff[j] + s[j + 1] + half_eff[j + 1]) / 2 for j in range(n - 1)])
    conus = 200.0
    if "L1" in anat.levels:
        j1 = anat.levels.index("L1")
        conus = s[j1] - half[j1] * 0.4 + anat.conus_offset_mm
    elif anat.levels[0].startswith("L"):
        conus = s[0] + 60
    return Layout(s=s, bounds=mids[::-1].copy(), half=half_eff, lesion_top=half_eff[li], conus_s=float(conus))


# ----------------------------------------------------------------------------------------------
# Coordinates


def _tilt_matrix(anat: Anatomy) -> np.ndarray:
    c, s = np.cos(anat.tilt_rad), np.sin(anat.tilt_rad)
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def straighten(anat: Anatomy, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, ...]:
    """T2 physical (LPS mm) -> spine coordinates (x left, v posterior, s superior along the curve)."""
    m = _tilt_matrix(anat)
    dx, dy, dz = x - anat.anchor[0], y - anat.anchor[1], z - anat.anchor[2]
    xt = dx
    yt = m[1, 1] * dy + m[1, 2] * dz
    zt = m[2, 1] * dy + m[2, 2] * dz
    return _bend(anat, xt, yt, zt)


def _bend(anat: Anatomy, xt, yt, zt):
    r_signed = anat.radius_mm
    sg = 1.0 if r_signed > 0 else -1.0
    dy = r_signed - yt
    r = np.hypot(dy, zt)
    phi = np.arctan2(sg * zt, sg * dy)
    return xt, r_signed - sg * r, r_signed * phi


def unstraighten(anat: Anatomy, x, v, s) -> np.ndarray:
    """Spine coordinates -> T2 physical LPS mm, shape [..., 3]."""
    r_signed = anat.radius_mm
    sg = 1.0 if r_signed > 0 else -1.0
    phi = np.asarray(s, float) / r_signed
    r = sg * (r_signed - np.asarray(v, float))
    yt = r_signed - sg * r * np.cos(phi)
    zt = sg * r * np.sin(phi)
    pt = np.stack(np.broadcast_arrays(np.asarray(x, float), yt, zt), axis=-1)
    return pt @ _tilt_matrix(anat) + anat.anchor  # rows: m^T applied


def vertebra_centres(anat: Anatomy) -> np.ndarray:
    """Centres of all vertebral bodies in T2 physical space (LPS mm), top level first."""
    lay = layout(anat)
    return unstraighten(anat, np.zeros_like(lay.s), np.zeros_like(lay.s), lay.s)


# ----------------------------------------------------------------------------------------------
# Signed distance helpers (mm; negative inside)


def _sd_box2(px, py, hx, hy, r):
    qx = np.abs(px) - (hx - r)
    qy = np.abs(py) - (hy - r)
    out = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    return out + np.minimum(np.maximum(qx, qy), 0) - r


def _extrude(d_plane, d_axis, r=0.0):
    out = np.hypot(np.maximum(d_plane + r, 0), np.maximum(d_axis + r, 0))
    return out + np.minimum(np.maximum(d_plane + r, d_axis + r), 0) - r


def _sd_box3(px, py, pz, hx, hy, hz, r):
    return _extrude(_sd_box2(px, py, hx, hy, r), np.abs(pz) - hz, 0.0)


def _ellipsoid(px, py, pz, ax, ay, az):
    return (px / ax) ** 2 + (py / ay) ** 2 + (pz / az) ** 2 < 1.0


CORTEX_MM = 1.3


def _body_sd(anat: Anatomy, lay: Layout, j: np.ndarray, x, v, u):
    """Signed distance to the vertebral body of level j (generic shape), mm."""
    a = (anat.width_mm / 2).astype(np.float32)[j]
    b = (anat.depth_mm / 2).astype(np.float32)[j]
    h = (anat.height_mm / 2).astype(np.float32)[j]
    d_ax = _sd_box2(x, v, a, b, np.minimum(a, b) * 0.55)
    # slight physiological biconcavity of the endplates
    w = np.clip(1 - (x / a) ** 2 - (v / b) ** 2, 0, 1)
    return _extrude(d_ax, np.abs(u) - (h - 0.8 * w), 1.5)


def _lesion_surfaces(anat: Anatomy, lay: Layout, x, v):
    """Superior and inferior endplate heights (u, mm) of the lesion body over (x, v)."""
    li = anat.lesion_index
    a, b = anat.width_mm[li] / 2, anat.depth_mm[li] / 2
    hh = lay.lesion_top
    top = np.full(np.shape(x), hh)
    bot = -top.copy()
    w = np.clip(1 - (x / a) ** 2 - (v / b) ** 2, 0, 1)
    if _feat(anat, "anterior_wedge_deformity"):
        ant = np.clip((b - v) / (2 * b), 0, 1)
        top = top - 0.65 * anat.lesion.wedge_mm * ant
        bot = bot + 0.35 * anat.lesion.wedge_mm * ant
    if _feat(anat, "central_concave_deformity"):
        top = top - anat.lesion.concave_mm * w
        bot = bot + anat.lesion.concave_mm * w
    else:
        top = top - 0.8 * w
        bot = bot + 0.8 * w
    return top, bot


def _lesion_body_sd(anat: Anatomy, lay: Layout, x, v, u):
    li = anat.lesion_index
    a, b = anat.width_mm[li] / 2, anat.depth_mm[li] / 2
    top, bot = _lesion_surfaces(anat, lay, x, v)
    # even a vertebra plana keeps a sliver of body (~15% of its height)
    mid, half = (top + bot) / 2, np.maximum((top - bot) / 2, 0.075 * anat.height_mm[li])
    d_u = np.abs(u - mid) - half
    vv = v
    if _feat(anat, "vertebral_body_protrusion"):
        bulge = anat.lesion.protrusion_mm / b * np.clip(1 - ((u - mid) / half) ** 2, 0, 1)
        vv = np.where(v > 0, v / (1 + bulge), v)
    d_ax = _sd_box2(x, vv, a, b, min(a, b) * 0.55)
    return _extrude(d_ax, d_u, 1.5), top, bot, d_ax


# ----------------------------------------------------------------------------------------------
# Labelling points


def label_points(anat: Anatomy, lay: Layout, x, v, s) -> tuple[np.ndarray, np.ndarray]:
    """Tissue id (uint8) and a brightness multiplier for every point given in spine coordinates.

    Structures are painted in order (later wins); each is evaluated only on the points near it.
    """
    shape = np.shape(x)
    x = np.ravel(x).astype(np.float32)
    v = np.ravel(v).astype(np.float32)
    s = np.ravel(s).astype(np.float32)
    lab = np.zeros(x.size, np.uint8)
    mult = np.ones(x.size, np.float32)
    bm = anat.mean_half_depth_mm
    ca, cv = anat.canal_half_mm
    vc = bm + anat.canal_gap_mm + cv  # centre of the thecal sac
    n = len(anat.levels)
    W = (anat.width_mm / 2).astype(np.float32)
    ph = anat.bowel_phase

    # Which level's cell each point is in, and its coordinates relative to that body centre.
    j = (n - 1) - np.searchsorted(lay.bounds, s)
    u = s - lay.s.astype(np.float32)[j]

    # Soft tissues: everything in front of the posterior skin is fat first.
    skin = anat.skin_v_mm + 4.0 * np.sin(s / 70.0 + ph[0])
    inside = v < skin
    lab[inside] = T["fat"]
    # Paraspinal muscles behind the bodies; psoas beside them.
    muscle = inside & (v < skin - anat.subcut_mm)
    muscle &= (v > bm + 2) | ((np.abs(x) > W[j] - 4) & (v > -bm))
    lab[muscle] = T["muscle"]
    # Retroperitoneum: fat in front of the spine, then bowel loops with a smooth irregular texture.
    front = -bm - 7.0
    ia = np.flatnonzero(v < front)
    if ia.size:
        xa, va, sa = x[ia], v[ia], s[ia]
        t = np.cos(sa / 11.0 + ph[0] + 1.3 * np.sin(va / 23.0 + ph[1]))
        t *= np.cos(va / 9.0 + ph[1] + 1.1 * np.sin(sa / 19.0 + ph[2]))
        t *= np.cos(xa / 14.0 + ph[2] + 0.8 * np.sin(sa / 29.0))
        la = lab[ia]
        ma = mult[ia]
        bowel = (va < front - 6) & (t > -0.2)
        la[bowel] = T["viscera"]
        ma[bowel] = 0.8 + 0.3 * t[bowel]
        ax_, av_, ar_ = anat.aorta
        la[((xa - ax_) ** 2 + (va + bm + av_) ** 2) < ar_**2] = T["flow_void"]
        ivc = ((xa + ax_ + 8) ** 2 + (va + bm + av_ - 2) ** 2) < (0.9 * ar_) ** 2
        la[ivc] = T["viscera"]
        ma[ivc] = 1.1
        lab[ia] = la
        mult[ia] = ma

    # Posterior elements of every level (evaluated near the canal only).
    pe = np.flatnonzero((v > bm - 8) & (v < vc + cv + 40) & (np.abs(x) < ca + 14))
    if pe.size:
        xp, vp, up, jp = x[pe], v[pe], u[pe], j[pe]
        hp = (anat.height_mm / 2).astype(np.float32)[jp]
        gp = anat.disc_mm.astype(np.float32)[jp]
        bp = (anat.depth_mm / 2).astype(np.float32)[jp]
        px = ca + 4.0
        # pedicles: from the posterior body wall back to the pillars, upper half of the body
        ped = _sd_box3(np.abs(xp) - px, vp - (bp + vc) / 2, up - 0.25 * hp, 4.0, (vc - bp) / 2 + 3, 6.5, 3.0)
        # articular pillars with a facet joint gap between levels
        pil = _sd_box3(np.abs(xp) - px, vp - (vc + 5), up + gp / 4, 4.5, 6.0, hp + gp / 2 - 1.8, 2.0)
        # laminae behind the sac
        vl = vc + cv + 6.0
        lam = _sd_box3(xp, vp - vl, up - 0.1 * hp + 0.15 * (vp - vl), px + 2, 3.0, hp - 3.0, 2.0)
        # spinous processes, sloping caudally
        length = 20.0 + 0.5 * hp
        spn = _sd_box3(
            xp, vp - (vl + length / 2), up + 0.15 * hp + 0.3 * (vp - vl), 3.2, length / 2, 8.0, 3.0
        )
        d = np.minimum(np.minimum(ped, pil), np.minimum(lam, spn))
        bone = d < 0
        lab[pe[bone]] = np.where(d[bone] > -CORTEX_MM, T["cortex"], T["marrow"]).astype(np.uint8)
        mult[pe[bone]] = anat.marrow_scale.astype(np.float32)[jp[bone]]
        if _feat(anat, "pedicle_posterior_involvement"):
            inv = (jp == anat.lesion_index) & (np.minimum(ped, np.minimum(pil, lam)) < -0.5)
            lab[pe[inv]] = T["tumour"]
            mult[pe[inv]] = 1.0

    # Epidural fat, thecal sac, cord / cauda equina.
    ic = np.flatnonzero((np.abs(x) < ca + 2) & (np.abs(v - vc - 1.5) < cv + 2.5))
    if ic.size:
        xc, vcs, sc = x[ic], v[ic] - vc, s[ic]
        lc = lab[ic]
        lc[((xc / (ca + 2)) ** 2 + ((vcs - 1.5) / (cv + 2.5)) ** 2) < 1] = T["fat"]
        sac = ((xc / ca) ** 2 + (vcs / cv) ** 2) < 1
        lc[sac] = T["csf"]
        taper = np.clip((sc - lay.conus_s) / 18.0, 0, 1) ** 0.5
        cord = sac & (((xc / (4.8 * taper + 1e-6)) ** 2 + ((vcs + 0.5) / (3.8 * taper + 1e-6)) ** 2) < 1)
        lc[cord] = T["cord"]
        roots = sac & (sc < lay.conus_s) & (np.abs(xc) < 3.5) & (np.abs(vcs - 0.45 * cv) < 0.9)
        lc[roots] = T["cord"]
        lab[ic] = lc
        mult[ic] = 1.0

    # Discs between bodies, bodies on top (core of the spine only).
    ib = np.flatnonzero((np.abs(v) < bm + 12) & (np.abs(x) < W.max() + 6))
    if ib.size:
        lb, mb = lab[ib], mult[ib]
        _label_core(anat, lay, lb, mb, x[ib], v[ib], s[ib], u[ib], j[ib], bm, ca, cv)
        lab[ib], mult[ib] = lb, mb
    return lab.reshape(shape), mult.reshape(shape)


def _label_core(anat, lay, lab, mult, x, v, s, u, j, bm, ca, cv):
    n = len(anat.levels)
    vc = bm + anat.canal_gap_mm + cv
    jd = np.where(u > 0, j - 1, j)  # disc index (disc below level jd)
    valid = (jd >= 0) & (jd < n - 1)
    jdc = np.clip(jd, 0, n - 2)
    disc_s = ((lay.s[:-1] - lay.half[:-1] + lay.s[1:] + lay.half[1:]) / 2).astype(np.float32)[jdc]
    wd = ((anat.width_mm[:-1] + anat.width_mm[1:]) / 4).astype(np.float32)
    dd = ((anat.depth_mm[:-1] + anat.depth_mm[1:]) / 4 + 0.5).astype(np.float32)
    a_d, b_d = wd[jdc], dd[jdc]
    d_ax = _sd_box2(x, v, a_d, b_d, np.minimum(a_d, b_d) * 0.55)
    g = anat.disc_mm.astype(np.float32)[jdc]
    in_disc = valid & (d_ax < 0) & (np.abs(s - disc_s) < g / 2 + 3)
    lab[in_disc] = T["annulus"]
    mult[in_disc] = 1.0
    # a degenerated (desiccated) nucleus stays dark like the annulus
    nuc = in_disc & _ellipsoid(x, v + 0.1 * b_d, s - disc_s, 0.62 * a_d, 0.55 * b_d, 0.5 * g + 1.5)
    nuc &= anat.nucleus_scale[jdc] > 0.6
    lab[nuc] = T["nucleus"]

    body_sd = _body_sd(anat, lay, j, x, v, u)
    li = anat.lesion_index
    is_les = j == li
    body = (body_sd < 0) & ~is_les
    lab[body] = np.where(body_sd[body] > -CORTEX_MM, T["cortex"], T["marrow"]).astype(np.uint8)
    mult[body] = anat.marrow_scale.astype(np.float32)[j[body]]

    _label_other_findings(anat, lay, lab, j, x, v, u, body_sd)
    _label_lesion(anat, lay, lab, mult, np.flatnonzero(is_les), x, v, u, bm, vc, ca, cv)


def _frac_pos(anat: Anatomy, j: int, fx: float, fv: float, fu: float) -> tuple[float, float, float]:
    return fx * anat.width_mm[j] / 2, fv * anat.depth_mm[j] / 2, fu * anat.height_mm[j] / 2


def _label_other_findings(anat, lay, lab, j, x, v, u, body_sd):
    """Skipped metastases, an incidental haemangioma and a degenerative endplate change."""
    li = anat.lesion_index
    n = len(anat.levels)
    spots = []
    if _feat(anat, "skipped_lesion_other_vertebra"):
        spots += [(o, fx, fv, fu, r, T["tumour"]) for (o, fx, fv, fu, r) in anat.lesion.skip]
    if anat.hemangioma is not None:
        o, fx, fv, fu, r = anat.hemangioma
        spots.append((o, fx, fv, fu, r, T["hemangioma"]))
    for o, fx, fv, fu, r, tissue in spots:
        jj = li + o
        if not 0 <= jj < n:
            continue
        cx, cv_, cu = _frac_pos(anat, jj, fx, fv, fu)
        m = (j == jj) & (body_sd < -CORTEX_MM) & _ellipsoid(x - cx, v - cv_, u - cu, r, r, r * 0.8)
        lab[m] = tissue
    if anat.modic is not None:
        o, sup = anat.modic
        jj = li + o
        if 0 <= jj < n:
            h = anat.height_mm[jj] / 2
            edge = (h - u) if sup else (u + h)
            m = (j == jj) & (body_sd < -CORTEX_MM) & (edge < 5.0) & (np.abs(v) < anat.depth_mm[jj] * 0.35)
            lab[m] = T["modic"]


def _label_lesion(anat, lay, lab, mult, idx, x, v, u, bm, vc, ca, cv):
    """The abnormal vertebra, drawn from its features."""
    if idx.size == 0:
        return
    L = anat.lesion
    li = anat.lesion_index
    a, b = anat.width_mm[li] / 2, anat.depth_mm[li] / 2
    xs, vs, us = x.flat[idx], v.flat[idx], u.flat[idx]
    cur = lab.flat[idx].copy()

    sd, top, bot, d_ax = _lesion_body_sd(anat, lay, xs, vs, us)
    body = sd < 0
    inner = sd < -CORTEX_MM
    # Disc material fills what the collapsed endplates left (the cell is taller than the body).
    disc_like = (cur == T["annulus"]) | (cur == T["nucleus"])
    cur[~body & (d_ax < 0) & ~disc_like] = T["annulus"]
    cur[body] = T["cortex"]
    cur[inner] = T["marrow"]
    # depth below the affected endplate, and relative position in the body
    dend = (top - us) if L.superior else (us - bot)
    fx, fv = xs / a, vs / b
    mid = (top + bot) / 2
    half = np.maximum((top - bot) / 2, 0.075 * anat.height_mm[li])
    fu = (us - mid) / half

    def sphere(spec, scale_u=0.8):
        sx, sv, su, r = spec
        return _ellipsoid(xs - sx * a, vs - sv * b, (fu - su) * half, r, r, r * scale_u)

    if _feat(anat, "diffuse_signal_change"):
        # less than a quarter of the body keeps its fatty marrow (a posterior-inferior corner)
        spared = ((us - bot) / (0.5 * (top - bot))) ** 2 + ((fv - 1.0) / 0.9) ** 2 < 1
        cur[inner & ~spared] = T["replaced"]
    if _feat(anat, "band_pattern_edema"):
        wavy = L.band_mm * (1 + 0.25 * np.cos(fv * 5.0 + fx * 3.0))
        cur[inner & (dend < wavy)] = T["edema"]
    if not _feat(anat, "homogeneous_marrow_signal"):
        for i, spec in enumerate(L.mottle):
            cur[inner & sphere(spec)] = T["fat"] if i % 3 == 0 else T["edema"]
    if _feat(anat, "intravertebral_mass"):
        cur[inner & sphere(L.mass, 0.9)] = T["nodule"]
    if _feat(anat, "intravertebral_dark_patch"):
        cur[inner & sphere(L.patch, 0.7)] = T["sclerosis"]
    if _feat(anat, "intravertebral_dark_line"):
        cur[inner & (np.abs(dend - L.line_depth_mm) < 1.1) & (np.abs(fv) < 0.9)] = T["sclerosis"]
    if _feat(anat, "fluid_or_necrotic_cleft"):
        cleft = (np.abs(dend - L.cleft_depth_mm - 0.8 * (fv + 1)) < 1.2) & (fv < 0.35) & (np.abs(fx) < 0.75)
        cur[inner & cleft] = T["fluid"]
    if _feat(anat, "pedicle_posterior_involvement"):
        cur[inner & (fv > 0.45) & (np.abs(fx) > 0.12)] = T["tumour"]
    if _feat(anat, "epidural_paraspinal_mass"):
        te, ta = L.epidural_mm
        epi = ~body & _ellipsoid(xs, vs - b - te / 2, us - mid, ca + 1, te, half + 3)
        pre = ~body & _ellipsoid(xs, vs + b + ta / 2 - 1, us - mid, a + 4, ta, half + 4)
        para = ~body & _ellipsoid(np.abs(xs) - a - 3, vs, us - mid, 9.0, b * 0.8, half + 3)
        cur[epi | pre | para] = T["tumour"]
    old = lab.flat[idx]
    keep = mult.flat[idx]
    lab.flat[idx] = cur
    mult.flat[idx] = np.where(cur == T["marrow"], anat.marrow_scale[li], np.where(cur == old, keep, 1.0))


def lesion_body_mask(anat: Anatomy, points: np.ndarray) -> np.ndarray:
    """True where points (LPS mm, [..., 3]) lie in the lesion vertebral body (any collapse shape)."""
    lay = layout(anat)
    x, v, s = straighten(anat, points[..., 0], points[..., 1], points[..., 2])
    n = len(anat.levels)
    j = (n - 1) - np.searchsorted(lay.bounds, s)
    u = s - lay.s[anat.lesion_index]
    sd = _lesion_body_sd(anat, lay, x, v, u)[0]
    return (j == anat.lesion_index) & (sd < 0)


# ----------------------------------------------------------------------------------------------
# Signal


def tissue_signal(anat: Anatomy, seq: Sequence) -> np.ndarray:
    """Spin-echo signal of each tissue: PD (1 - exp(-TR/T1)) exp(-TE/T2)."""
    tab = anat.tissue_table
    t2 = tab[:, 3] if seq.fast_spin_echo else tab[:, 2]
    sig = tab[:, 0] * (1 - np.exp(-seq.repetition_time_ms / tab[:, 1])) * np.exp(-seq.echo_time_ms / t2)
    return sig.astype(np.float32)


def render(
    anat: Anatomy,
    grid: SeriesGeometry,
    seq: Sequence,
    *,
    scanner_to_anatomy: tuple[np.ndarray, np.ndarray] | None = None,
    subsamples: int = 3,
    noise: float = 0.0,
    rng: np.random.Generator | None = None,
    bias: np.ndarray | None = None,
    acquisition_matrix: tuple[int, int] | None = None,
    scale: float = 2000.0,
) -> np.ndarray:
    """Sample the phantom on ``grid`` -> float32 [slices, rows, cols] magnitude image.

    ``scanner_to_anatomy`` = (A, b): the anatomy shown at scanner point q is A q + b (patient
    motion between series). Partial volume: ``subsamples`` points across the slice thickness.
    ``noise`` is the Rician noise sd as a fraction of the fat signal; ``bias`` the coefficients of a
    smooth receive-coil field; ``acquisition_matrix`` (rows, cols) < grid simulates a zero-filled
    reconstruction (k-space truncation, Gibbs ringing, correlated noise).
    """
    lay = layout(anat)
    lut = tissue_signal(anat, seq)
    nk, nr, nc = grid.shape
    sub = (np.arange(subsamples) + 0.5) / subsamples - 0.5
    sub = sub * grid.thickness
    out = np.empty((nk, nr, nc), np.float32)
    # scanner point q -> anatomy A q + b -> tilted spine frame M (. - anchor): one affine map of
    # the voxel indices, evaluated by broadcasting (no per-point matrix products).
    a_m, b_v = scanner_to_anatomy if scanner_to_anatomy is not None else (np.eye(3), np.zeros(3))
    m = _tilt_matrix(anat) @ np.asarray(a_m, float)
    shift = _tilt_matrix(anat) @ (np.asarray(b_v, float) - anat.anchor)
    n_vec = m @ grid.slice_normal()
    r_vec = m @ np.asarray(grid.col_dir, float) * grid.pixel_spacing[0]
    c_vec = m @ np.asarray(grid.row_dir, float) * grid.pixel_spacing[1]
    sub32 = sub.astype(np.float32)[:, None, None]
    rr = np.arange(nr, dtype=np.float32)[None, :, None]
    cc = np.arange(nc, dtype=np.float32)[None, None, :]
    for k in range(nk):
        base = m @ (np.asarray(grid.origin, float) + k * grid.slice_spacing * grid.slice_normal()) + shift
        xt, yt, zt = (
            np.float32(base[i])
            + sub32 * np.float32(n_vec[i])
            + rr * np.float32(r_vec[i])
            + cc * np.float32(c_vec[i])
            for i in range(3)
        )
        x, v, s = _bend(anat, xt, yt, zt)
        lab, mult = label_points(anat, lay, x, v, s)
        out[k] = (lut[lab] * mult).mean(axis=0)
    out *= scale
    if bias is not None:
        out *= coil_field(grid, bias)
    if noise > 0:
        if rng is None:
            raise ValueError("noise needs an rng")
        sd = noise * scale * float(lut[T["fat"]])
        n1 = rng.standard_normal(out.shape, dtype=np.float32) * sd
        n2 = rng.standard_normal(out.shape, dtype=np.float32) * sd
        if acquisition_matrix is not None and tuple(acquisition_matrix) != (nr, nc):
            cplx = _truncate_kspace(out + n1 + 1j * n2, acquisition_matrix)
            out = np.abs(cplx).astype(np.float32)
        else:
            out = np.sqrt((out + n1) ** 2 + n2**2)
    elif acquisition_matrix is not None and tuple(acquisition_matrix) != (nr, nc):
        out = np.abs(_truncate_kspace(out.astype(np.complex64), acquisition_matrix)).astype(np.float32)
    return out


def _truncate_kspace(img: np.ndarray, acq: tuple[int, int]) -> np.ndarray:
    """Keep the central acq (rows, cols) of each slice's k-space: a zero-filled reconstruction.

    Only the axes that were under-sampled are transformed (usually just the phase direction).
    """
    out = img
    for axis, n_acq in ((1, acq[0]), (2, acq[1])):
        n = img.shape[axis]
        if n_acq >= n:
            continue
        k = np.fft.fft(out, axis=axis)
        freqs = np.fft.fftfreq(n, 1.0 / n)  # integer frequency of each bin
        keep = (freqs >= -(n_acq // 2)) & (freqs < n_acq - n_acq // 2)
        shape = [1, 1, 1]
        shape[axis] = n
        out = np.fft.ifft(k * keep.reshape(shape), axis=axis)
    return out


def coil_field(grid: SeriesGeometry, coeffs: np.ndarray) -> np.ndarray:
    """Smooth multiplicative receive field of a posterior spine coil, [slices, rows, cols].

    coeffs = (posterior gradient, superior-inferior falloff, left-right gradient, AP curvature).
    """
    nk, nr, nc = grid.shape
    kk = (np.arange(nk) - (nk - 1) / 2) / max(nk, 1)
    rr = (np.arange(nr) - (nr - 1) / 2) / nr
    cc = (np.arange(nc) - (nc - 1) / 2) / nc
    g_post, g_si, g_lr, g_ap2 = coeffs
    # columns run along row_dir (posterior in the demo), rows along col_dir (inferior)
    f = g_post * cc[None, None, :] - g_si * rr[None, :, None] ** 2 + g_lr * kk[:, None, None]
    f = f - g_ap2 * cc[None, None, :] ** 2
    return np.exp(f).astype(np.float32)
