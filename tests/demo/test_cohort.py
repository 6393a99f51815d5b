"""The demo cohort: sheets, DICOM, truth, determinism, feature rates and privacy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk

from spinefx.demo import cohort as demo
from spinefx.demo import phantom
from spinefx.errors import SpinefxError
from spinefx.features import DEMO_READERS, FEATURES, PAPER_TABLE1, paper_rate, reader_sensitivity_specificity

N, SEED = 6, 3


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    demo.write_demo_cohort(out, n_patients=N, seed=SEED, geometry="default")
    return out


def _sheet(path):
    return pd.read_csv(path, sep="\t", dtype={"patient_id": str})


def _read(folder) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def test_sheets_columns_ids_labels(cohort):
    patients = _sheet(cohort / "patients.tsv")
    assert list(patients.columns) == [
        "patient_id", "label", "t1_dicom", "t2_dicom", "lesion_instance",
        "box_x0", "box_y0", "box_x1", "box_y1", "t1_series_uid", "t2_series_uid",
    ]  # fmt: skip
    assert list(patients.patient_id) == [f"demo_{i:03d}" for i in range(1, N + 1)]
    assert (patients.label == "malignant").sum() == round(N * 50 / 190)
    assert set(patients.label) == {"benign", "malignant"}
    for row in patients.itertuples():
        assert (cohort / row.t1_dicom).is_dir() and (cohort / row.t2_dicom).is_dir()
    features = _sheet(cohort / "features.tsv")
    assert list(features.columns) == ["patient_id", *FEATURES]
    assert set(np.unique(features[list(FEATURES)].to_numpy())) <= {0, 1}
    readers = _sheet(cohort / "readers.tsv")
    assert list(readers.columns) == ["patient_id", "reader", "call"]
    assert len(readers) == 3 * N and set(readers.reader) == set(DEMO_READERS)
    assert set(readers.call) <= {"benign", "malignant"}
    truth = demo.read_truth(cohort / "truth.tsv")
    assert list(truth.patient_id) == list(patients.patient_id)
    assert list(truth.label) == list(patients.label)
    np.testing.assert_array_equal(truth[list(FEATURES)].to_numpy(), features[list(FEATURES)].to_numpy())
    assert truth.lesion_level.isin(phantom.LESION_LEVELS).all()
    for _, row in truth.iterrows():
        assert all(abs(row[f"rot_{a}_deg"]) <= 3 and abs(row[f"t{a}_mm"]) <= 3 for a in "xyz")
        assert demo.vertebra_centers(row).shape[0] >= 4


def test_labels_exact_count_and_minimum():
    labels = demo.assign_labels(80, 7, 0.263)
    assert sum(v == "malignant" for v in labels.values()) == 21
    assert list(labels) == [f"demo_{i:03d}" for i in range(1, 81)]
    assert demo.assign_labels(80, 8, 0.263) != labels  # seeded order
    assert sum(v == "malignant" for v in demo.assign_labels(5, 1, 0.01).values()) == 2
    with pytest.raises(SpinefxError):
        demo.assign_labels(3, 1, 0.5)


def test_same_arguments_same_bytes(cohort, tmp_path):
    demo.write_demo_cohort(tmp_path, n_patients=N, seed=SEED, geometry="default")
    for name in ("patients.tsv", "features.tsv", "readers.tsv", "truth.tsv"):
        assert (tmp_path / name).read_bytes() == (cohort / name).read_bytes()
    for rel in ("dicom/demo_001/t1/IM0001.dcm", "dicom/demo_004/t2/IM0006.dcm"):
        assert (tmp_path / rel).read_bytes() == (cohort / rel).read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers
    other = tmp_path / "other"
    demo.write_demo_cohort(other, n_patients=4, seed=SEED + 1, geometry="default")
    assert (other / "truth.tsv").read_bytes()[:2000] != (cohort / "truth.tsv").read_bytes()[:2000]


def test_explicit_files_are_written_where_named_and_the_sheet_points_at_the_dicom(cohort, tmp_path):
    """A rule's declared outputs are the files written; the sheet's paths resolve from its folder."""
    files = demo.DemoCohortFiles(
        sheet=tmp_path / "sheets" / "cohort.tsv",
        features=tmp_path / "sheets" / "feats.tsv",
        readers=tmp_path / "readers.tsv",
        truth=tmp_path / "truth" / "truth.tsv",
        dicom=tmp_path / "images",
    )
    demo.write_demo_cohort(files, n_patients=N, seed=SEED, geometry="default")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "readers.tsv", "sheets", "truth"]
    sheet = _sheet(files.sheet)
    assert sheet.loc[0, "t1_dicom"] == "../images/demo_001/t1"
    assert (files.sheet.parent / sheet.loc[0, "t2_dicom"] / "IM0001.dcm").read_bytes() == (
        cohort / "dicom/demo_001/t2/IM0001.dcm"
    ).read_bytes()
    assert files.truth.read_bytes() == (cohort / "truth.tsv").read_bytes()
    assert sheet.drop(columns=["t1_dicom", "t2_dicom"]).equals(
        _sheet(cohort / "patients.tsv").drop(columns=["t1_dicom", "t2_dicom"])
    )


def test_feature_rates_match_the_paper_and_stay_coherent():
    rng = np.random.default_rng(0)
    n = 4000
    for label in ("benign", "malignant"):
        draws = pd.DataFrame([demo.draw_features(rng, label) for _ in range(n)])
        for f in FEATURES:
            assert abs(draws[f].mean() - paper_rate(f, label)) < 0.03, (label, f, draws[f].mean())
        collapsed = draws[
            ["anterior_wedge_deformity", "compression_of_entire_body", "central_concave_deformity"]
        ]
        assert ((draws.absence_of_collapse == 1) == (collapsed.sum(axis=1) == 0)).all()
        homog = draws.homogeneous_marrow_signal == 1
        assert not (homog & (draws.diffuse_signal_change == 1)).any()
        assert not (homog & (draws.band_pattern_edema == 1)).any()
        assert not ((draws.diffuse_signal_change == 1) & (draws.band_pattern_edema == 1)).any()
    assert set(PAPER_TABLE1) == set(FEATURES)


def test_reader_calls_match_paper_rates():
    rng = np.random.default_rng(1)
    labels = {f"p{i:05d}": ("malignant" if i % 4 == 0 else "benign") for i in range(6000)}
    feats = {pid: demo.draw_features(rng, lab) for pid, lab in labels.items()}
    calls = demo.draw_reader_calls(labels, feats, seed=2)
    calls["label"] = calls.patient_id.map(labels)
    for reader, paper_name in DEMO_READERS.items():
        sens, spec = reader_sensitivity_specificity(paper_name)
        c = calls[calls.reader == reader]
        mal, ben = c[c.label == "malignant"], c[c.label == "benign"]
        assert abs((mal.call == "malignant").mean() - sens) < 0.03
        assert abs((ben.call == "benign").mean() - spec) < 0.03
    # the first-year resident's false positives avoid homogeneous marrow (as in the paper)
    r1 = calls[(calls.reader == "r1") & (calls.label == "benign")].copy()
    r1["homog"] = r1.patient_id.map(lambda p: feats[p]["homogeneous_marrow_signal"])
    fp = r1[r1.call == "malignant"]
    tn = r1[r1.call == "benign"]
    assert fp.homog.mean() < 0.5 * tn.homog.mean()


def test_dicom_geometry_rescale_and_different_matrices(cohort):
    patients = _sheet(cohort / "patients.tsv")
    row = patients.iloc[0]
    t1, t2 = _read(cohort / row.t1_dicom), _read(cohort / row.t2_dicom)
    spec = demo.GEOMETRIES["default"]
    assert t2.GetSize() == (spec["t2"].cols, spec["t2"].rows, spec["t2"].slices)
    assert t1.GetSize() == (spec["t1"].cols, spec["t1"].rows, spec["t1"].slices)
    assert t1.GetSize()[:2] != t2.GetSize()[:2]
    np.testing.assert_allclose(t2.GetSpacing(), (1.0, 1.0, 4.0), atol=1e-6)
    np.testing.assert_allclose(t1.GetSpacing(), (1.2, 1.2, 4.0), atol=1e-6)
    direction = np.array(t2.GetDirection()).reshape(3, 3)  # columns: index x, y, z directions
    np.testing.assert_allclose(direction[:, 0], demo.ROW_DIR, atol=1e-6)
    np.testing.assert_allclose(direction[:, 1], demo.COL_DIR, atol=1e-6)
    assert abs(abs(direction[0, 2]) - 1) < 1e-6  # slices step along left-right: sagittal
    # rescale: SimpleITK values == stored * slope + intercept, with a non-unit slope on both series
    for folder, s in ((row.t1_dicom, "t1"), (row.t2_dicom, "t2")):
        ds = pydicom.dcmread(sorted((cohort / folder).glob("*.dcm"))[0])
        assert float(ds.RescaleSlope) == demo.SERIES[s]["slope"] != 1.0
        assert float(ds.RescaleIntercept) == demo.SERIES[s]["intercept"]
        assert float(ds.RepetitionTime) == {"t1": 400.0, "t2": 3200.0}[s]
        img = _read(cohort / folder)
        k = int(round(img.TransformPhysicalPointToContinuousIndex(ds.ImagePositionPatient)[2]))
        expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_allclose(sitk.GetArrayFromImage(img)[k], expected, atol=1e-3)
    assert str(ds.SeriesInstanceUID) == row.t2_series_uid


def test_truth_transform_maps_t2_anatomy_onto_t1(cohort):
    truth = demo.read_truth(cohort / "truth.tsv")
    row = truth.iloc[1]
    patients = _sheet(cohort / "patients.tsv").set_index("patient_id")
    t1 = sitk.Cast(_read(cohort / patients.loc[row.patient_id, "t1_dicom"]), sitk.sitkFloat32)
    t2 = _read(cohort / patients.loc[row.patient_id, "t2_dicom"])
    tf = demo.truth_transform(row)
    # noise-free T1 contrast of the same anatomy drawn directly on the T2 grid
    p = demo.plan_patient(SEED, row.patient_id, row.label)
    ref = phantom.render(p.anatomy, p.grids["t2"], phantom.T1W)
    moved = sitk.GetArrayFromImage(sitk.Resample(t1, t2, tf, sitk.sitkLinear, 0.0))
    still = sitk.GetArrayFromImage(
        sitk.Resample(t1, t2, sitk.Transform(3, sitk.sitkIdentity), sitk.sitkLinear)
    )
    inner = (slice(2, -2), slice(20, -20), slice(20, -20))

    def corr(a):
        return np.corrcoef(a[inner].ravel(), ref[inner].ravel())[0, 1]

    assert corr(moved) > 0.9
    assert corr(moved) > corr(still) + 0.02
    # each vertebral centre of T2 lands in bright (fatty marrow) T1 signal at T(p)
    centres = demo.vertebra_centers(row)
    vals = [t1.EvaluateAtPhysicalPoint(tf.TransformPoint(c.tolist()), sitk.sitkLinear) for c in centres]
    muscle_like = np.percentile(sitk.GetArrayFromImage(t1), 50)
    assert np.median(vals) > muscle_like


def test_box_inside_image_and_contains_the_lesion_body(cohort):
    patients = _sheet(cohort / "patients.tsv")
    spec = demo.GEOMETRIES["default"]["t2"]
    for row in patients.itertuples():
        assert 0 <= row.box_x0 < row.box_x1 <= spec.cols and 0 <= row.box_y0 < row.box_y1 <= spec.rows
        w, h = row.box_x1 - row.box_x0, row.box_y1 - row.box_y0
        assert min(w, h) >= 25 and max(w, h) / min(w, h) < 1.3
        numbers = [int(pydicom.dcmread(f).InstanceNumber) for f in (cohort / row.t2_dicom).glob("*.dcm")]
        assert row.lesion_instance in numbers
        p = demo.plan_patient(SEED, row.patient_id, row.label)
        k = demo.lesion_slice(p)
        assert k + 1 == row.lesion_instance
        g = p.grids["t2"]
        for kk in (k - 1, k, k + 1):
            pts = g.points(kk)[0]
            mask = phantom.lesion_body_mask(p.anatomy, pts)
            ys, xs = np.nonzero(mask)
            assert ys.size > 100  # even a severe (wedge + compression + concave) collapse
            assert xs.min() >= row.box_x0 and xs.max() < row.box_x1
            assert ys.min() >= row.box_y0 and ys.max() < row.box_y1
            # the T1 field of view still covers the whole box after the motion
            tf, g1 = p.transform(), p.grids["t1"]
            for corner in pts[[row.box_y0, row.box_y1 - 1]][:, [row.box_x0, row.box_x1 - 1]].reshape(-1, 3):
                kq, rq, cq = g1.index_of(np.array(tf.TransformPoint(corner.tolist())))
                assert (
                    0 <= kq <= g1.shape[0] - 1 and 0 <= rq <= g1.shape[1] - 1 and 0 <= cq <= g1.shape[2] - 1
                )


def test_phi_in_headers_never_in_sheets(cohort):
    sheets = "".join(
        (cohort / n).read_text() for n in ("patients.tsv", "features.tsv", "readers.tsv", "truth.tsv")
    )
    for i in range(1, N + 1):
        pid = f"demo_{i:03d}"
        phi = demo.demo_phi(SEED, pid)
        assert set(phi) >= {
            "PatientName", "PatientID", "PatientBirthDate", "AccessionNumber",
            "InstitutionName", "ReferringPhysicianName", "PatientSex", "PatientAge",
        }  # fmt: skip
        assert phi["PatientID"] != pid and pid not in phi["PatientID"]
        for s in ("t1", "t2"):
            for f in sorted((cohort / "dicom" / pid / s).glob("*.dcm"))[:2]:
                ds = pydicom.dcmread(f)
                for tag, value in phi.items():
                    assert str(ds.get(tag)) == value, (tag, f)
        for tag in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "InstitutionName"):
            assert phi[tag] not in sheets
            assert phi[tag].split("^")[0] not in sheets or tag != "PatientName"
    assert demo.demo_phi(SEED, "demo_001") == demo.demo_phi(SEED, "demo_001")
    assert demo.demo_phi(SEED, "demo_001") != demo.demo_phi(SEED, "demo_002")


@pytest.mark.slow
def test_paper_geometry_renders_512(tmp_path):
    p = demo.plan_patient(1, "demo_001", "malignant", geometry="paper")
    vols = demo.render_patient(p, seed=1)
    assert vols["t1"].shape == vols["t2"].shape == (13, 512, 512)
    x0, y0, x1, y1 = demo.lesion_box(p)
    assert min(x1 - x0, y1 - y0) >= 40


def test_t1_is_planned_apart_from_t2_like_a_real_pair(cohort):
    """Different slice count, positions and thickness, and an offset FOV centre: only the scanner frame
    (ImagePositionPatient) says where T1 meets T2, as on a real scanner."""
    patients = _sheet(cohort / "patients.tsv")
    si_offsets = []
    for row in patients.itertuples():
        t1, t2 = (
            [pydicom.dcmread(f, stop_before_pixels=True) for f in (cohort / d).glob("*.dcm")]
            for d in (row.t1_dicom, row.t2_dicom)
        )
        assert len(t1) == 13 and len(t2) == 12
        assert {float(d.SliceThickness) for d in t1} == {3.5} and {float(d.SliceThickness) for d in t2} == {
            4.0
        }
        x1 = sorted(float(d.ImagePositionPatient[0]) for d in t1)
        x2 = sorted(float(d.ImagePositionPatient[0]) for d in t2)
        assert np.allclose(np.diff(x1), 4.0) and np.allclose(np.diff(x2), 4.0)
        # no T1 slice shares a T2 slice position
        assert min(abs(a - b) for a in x1 for b in x2) > 0.05
        c1, c2 = (_read(cohort / d) for d in (row.t1_dicom, row.t2_dicom))
        centres = [
            np.array(img.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in img.GetSize()]))
            for img in (c1, c2)
        ]
        offset = centres[0] - centres[1]
        np.testing.assert_allclose(offset, demo.t1_fov_offset(SEED, row.patient_id), atol=1e-3)
        si_offsets.append(abs(offset[2]))
    assert min(si_offsets) >= 10.0 and max(si_offsets) <= 30.0
    assert np.array_equal(demo.t1_fov_offset(SEED, "demo_001"), demo.t1_fov_offset(SEED, "demo_001"))
    assert not np.array_equal(demo.t1_fov_offset(SEED, "demo_001"), demo.t1_fov_offset(SEED, "demo_002"))
