"""The paper's own counts through the statistics, checked against scipy, statsmodels and the paper."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy.stats import binomtest, chi2, fisher_exact

from spinefx.errors import SpinefxError
from spinefx.evaluate import stats
from spinefx.features import FEATURES, PAPER_TABLE1, PAPER_TABLE2
from spinefx.learn.folds import assign_folds

MALIGNANT = [f"m{i:03d}" for i in range(50)]
BENIGN = [f"b{i:03d}" for i in range(140)]

# Table 2 as printed: sensitivity, specificity, accuracy in whole percent.
PRINTED = {
    "MSK Radiologist": (94, 99, 98),
    "Resident R4": (94, 96, 96),
    "Resident R1": (78, 61, 66),
    "ResNet50 Model": (94, 91, 92),
}


def paper_truth() -> pd.DataFrame:
    return pd.DataFrame({"patient_id": MALIGNANT + BENIGN, "label": ["malignant"] * 50 + ["benign"] * 140})


def paper_calls() -> pd.DataFrame:
    """Calls that reproduce Table 2. Errors are nested (a reader with fewer errors errs on a subset
    of the patients a worse reader errs on): the consistent construction for McNemar."""
    rows = []
    for reader, c in PAPER_TABLE2.items():
        for i, p in enumerate(MALIGNANT):
            rows.append((p, reader, "benign" if i < c["fn"] else "malignant"))
        for i, p in enumerate(BENIGN):
            rows.append((p, reader, "malignant" if i < c["fp"] else "benign"))
    return pd.DataFrame(rows, columns=["patient_id", "reader", "call"])


# ---------------------------------------------------------------------------------------- Table 2


@pytest.mark.parametrize("ci_method,scipy_method", [("clopper-pearson", "exact"), ("wilson", "wilson")])
def test_table2_paper_counts(ci_method: str, scipy_method: str) -> None:
    t = stats.diagnostic_table(paper_calls(), paper_truth(), ci_method=ci_method).set_index("reader")
    assert list(t.index) == list(PAPER_TABLE2)
    for reader, c in PAPER_TABLE2.items():
        row = t.loc[reader]
        assert (row.tp, row.tn, row.fn, row.fp, row.n) == (c["tp"], c["tn"], c["fn"], c["fp"], 190)
        printed = PRINTED[reader]
        got = [round(100 * row[m]) for m in ("sensitivity", "specificity", "accuracy")]
        assert got == list(printed), reader
        for metric, k, n in (
            ("sensitivity", c["tp"], 50),
            ("specificity", c["tn"], 140),
            ("accuracy", c["tp"] + c["tn"], 190),
        ):
            assert row[metric] == k / n
            ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method=scipy_method)
            assert row[f"{metric}_lo"] == pytest.approx(ci.low, abs=1e-10)
            assert row[f"{metric}_hi"] == pytest.approx(ci.high, abs=1e-10)
            assert row[f"{metric}_lo"] <= row[metric] <= row[f"{metric}_hi"]


def test_table2_alpha_widens_interval() -> None:
    t95 = stats.diagnostic_table(paper_calls(), paper_truth()).set_index("reader")
    t99 = stats.diagnostic_table(paper_calls(), paper_truth(), alpha=0.01).set_index("reader")
    assert (t99["specificity_lo"] < t95["specificity_lo"]).all()
    ci = binomtest(86, 140).proportion_ci(confidence_level=0.99, method="exact")
    assert t99.loc["Resident R1", "specificity_lo"] == pytest.approx(ci.low, abs=1e-10)


def test_model_row_from_per_patient_and_partial_reader() -> None:
    truth = paper_truth()
    per_patient = truth.assign(
        call=["malignant"] * 47 + ["benign"] * 3 + ["malignant"] * 12 + ["benign"] * 128, prob=0.5, fold=1
    )
    model = stats.calls_from_per_patient(per_patient)
    partial = pd.DataFrame(
        {"patient_id": ["m000", "b000"], "reader": "x", "call": ["malignant", "malignant"]}
    )
    t = stats.diagnostic_table(pd.concat([model, partial]), truth).set_index("reader")
    assert tuple(t.loc[stats.MODEL_READER, ["tp", "tn", "fn", "fp"]]) == (47, 128, 3, 12)
    assert tuple(t.loc["x", ["tp", "fp", "n"]]) == (1, 1, 2)


def test_calls_errors_name_the_patient() -> None:
    truth = paper_truth()
    bad = pd.DataFrame({"patient_id": ["nobody"], "reader": ["r1"], "call": ["benign"]})
    with pytest.raises(SpinefxError, match="nobody"):
        stats.diagnostic_table(bad, truth)
    bad = pd.DataFrame({"patient_id": ["m001"], "reader": ["r1"], "call": ["maybe"]})
    with pytest.raises(SpinefxError, match="m001"):
        stats.diagnostic_table(bad, truth)
    bad = pd.DataFrame({"patient_id": ["m001", "m001"], "reader": ["r1", "r1"], "call": ["benign"] * 2})
    with pytest.raises(SpinefxError, match="twice"):
        stats.diagnostic_table(bad, truth)


# ---------------------------------------------------------------------------------------- McNemar


def test_mcnemar_paper_r1_vs_model() -> None:
    m = stats.mcnemar_pairs(paper_calls(), paper_truth())
    assert len(m) == 6 * 2  # 4 readers -> 6 pairs, two subsets each
    r = m[(m.reader_a == "Resident R1") & (m.reader_b == "ResNet50 Model")].set_index("subset")
    # benign: R1 right on 86, the model on 128; nested errors -> all 42 discordant favour the model
    assert (r.loc["benign", "b"], r.loc["benign", "c"], r.loc["benign", "n"]) == (0, 42, 140)
    assert r.loc["benign", "p_value"] < 0.001
    # malignant: 39 vs 47 right -> 8 discordant, all for the model
    assert (r.loc["malignant", "b"], r.loc["malignant", "c"], r.loc["malignant", "n"]) == (0, 8, 50)
    for subset in ("benign", "malignant"):
        b, c = int(r.loc[subset, "b"]), int(r.loc[subset, "c"])
        assert r.loc[subset, "p_value"] == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-12)
        assert r.loc[subset, "a_correct_b_wrong"] == b and r.loc[subset, "a_wrong_b_correct"] == c
    # The paper prints p < 0.001 for R1's sensitivity; with 8 discordant patients the smallest
    # possible exact two-sided p is 2 * 0.5**8. The code must report that, not the paper's claim.
    assert r.loc["malignant", "p_value"] == pytest.approx(2 * 0.5**8)


def test_mcnemar_model_vs_msk_specificity_and_chi_square() -> None:
    m = stats.mcnemar_pairs(paper_calls(), paper_truth())
    r = m[(m.reader_a == "MSK Radiologist") & (m.reader_b == "ResNet50 Model") & (m.subset == "benign")].iloc[
        0
    ]
    assert (r.b, r.c) == (11, 0)  # MSK right where the model is wrong on 11 benign patients
    assert r.p_value == pytest.approx(2 * 0.5**11) and r.p_value < 0.001
    assert r.method == "exact binomial"
    mc = stats.mcnemar_pairs(paper_calls(), paper_truth(), exact=False)
    rc = mc[
        (mc.reader_a == "Resident R1") & (mc.reader_b == "ResNet50 Model") & (mc.subset == "benign")
    ].iloc[0]
    assert rc.p_value == pytest.approx(chi2.sf((abs(0 - 42) - 1) ** 2 / 42, 1), rel=1e-10)
    assert rc.method.startswith("chi-square")
    # MSK and R4 agree on every malignant patient (both miss the same 3): no discordance, p = 1
    same = mc[
        (mc.reader_a == "MSK Radiologist") & (mc.reader_b == "Resident R4") & (mc.subset == "malignant")
    ]
    assert (same.b.iloc[0], same.c.iloc[0], same.p_value.iloc[0]) == (0, 0, 1.0)


def test_mcnemar_only_patients_both_read() -> None:
    truth = paper_truth()
    calls = pd.DataFrame(
        {
            "patient_id": ["m000", "m001", "m002", "m000", "m001", "b000"],
            "reader": ["a", "a", "a", "b", "b", "b"],
            "call": ["malignant", "benign", "malignant", "benign", "benign", "benign"],
        }
    )
    m = stats.mcnemar_pairs(calls, truth).set_index("subset")
    assert m.loc["malignant", "n"] == 2 and m.loc["benign", "n"] == 0
    assert (m.loc["malignant", "b"], m.loc["malignant", "c"]) == (1, 0)
    assert np.isnan(m.loc["benign", "p_value"])


# ---------------------------------------------------------------------------------------- Table 1


def paper_features() -> pd.DataFrame:
    """A features sheet with exactly the paper's Table 1 counts."""
    data = {"patient_id": MALIGNANT + BENIGN}
    for f in FEATURES:
        mp, mt = PAPER_TABLE1[f]["malignant"]
        bp, bt = PAPER_TABLE1[f]["benign"]
        assert (mt, bt) == (50, 140)
        data[f] = [1] * mp + [0] * (mt - mp) + [1] * bp + [0] * (bt - bp)
    return pd.DataFrame(data)


def test_table1_paper_counts_fisher() -> None:
    truth = paper_truth()
    # an unlabelled patient and a patient without features must not count
    feats = pd.concat(
        [paper_features(), pd.DataFrame([{"patient_id": "stranger", **dict.fromkeys(FEATURES, 1)}])]
    )
    truth = pd.concat([truth, pd.DataFrame({"patient_id": ["nofeat"], "label": ["malignant"]})])
    t = stats.table1_features(feats, truth).set_index("feature")
    assert list(t.index) == list(FEATURES)
    for f in FEATURES:
        mp, mt = PAPER_TABLE1[f]["malignant"]
        bp, bt = PAPER_TABLE1[f]["benign"]
        assert tuple(
            t.loc[f, ["malignant_positive", "malignant_total", "benign_positive", "benign_total"]]
        ) == (
            mp,
            mt,
            bp,
            bt,
        )
        expected = fisher_exact([[mp, mt - mp], [bp, bt - bp]], alternative="two-sided").pvalue
        assert t.loc[f, "p_value"] == pytest.approx(expected, rel=1e-12)
    # "10 features showed significant differences with p <= 0.001" (at the paper's 3 printed decimals:
    # pedicle/posterior involvement is 0.00108, printed 0.001)
    significant = set(t.index[t["p_value"].round(3) <= 0.001])
    assert significant == {
        "absence_of_collapse",
        "anterior_wedge_deformity",
        "homogeneous_marrow_signal",
        "intravertebral_dark_line",
        "band_pattern_edema",
        "diffuse_signal_change",
        "intravertebral_mass",
        "epidural_paraspinal_mass",
        "pedicle_posterior_involvement",
        "skipped_lesion_other_vertebra",
    }
    # the paper's "similar incidence" of dark patches: 5/50 vs 14/140 is exactly 10% vs 10%
    assert t.loc["intravertebral_dark_patch", "p_value"] == pytest.approx(1.0)
    # Holm: sorted p times (m - rank), running max, capped at 1
    p = t["p_value"].to_numpy()
    order = np.argsort(p)
    holm = np.minimum(1, np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p)))))
    assert np.allclose(t["p_holm"].to_numpy()[order], holm)


def test_table1_missing_value_drops_patient_from_that_feature() -> None:
    feats = paper_features().astype({"absence_of_collapse": float})
    feats.loc[0, "absence_of_collapse"] = np.nan  # m000, a positive
    t = stats.table1_features(feats, paper_truth()).set_index("feature")
    assert tuple(t.loc["absence_of_collapse", ["malignant_positive", "malignant_total"]]) == (16, 49)
    assert t.loc["anterior_wedge_deformity", "malignant_total"] == 50
    feats.loc[1, "band_pattern_edema"] = 2
    with pytest.raises(SpinefxError, match="m001"):
        stats.table1_features(feats, paper_truth())


# ---------------------------------------------------------------------------------------- AUC


def brute_force_auc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    return float(((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean())


def test_auc_matches_mann_whitney_count_with_ties() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(y * 0.8, 1.0), 1)  # rounding makes ties
    r = stats.auc_ci(y, s)
    assert r["auc"] == pytest.approx(brute_force_auc(y, s), abs=1e-12)
    labels = np.where(y == 1, "malignant", "benign")
    assert stats.auc_ci(labels, s)["auc"] == pytest.approx(r["auc"])


def test_delong_variance_matches_explicit_structural_components() -> None:
    rng = np.random.default_rng(4)
    y = np.r_[np.ones(40, int), np.zeros(90, int)]
    s = np.round(rng.normal(y * 1.0, 1.0), 1)
    pos, neg = s[y == 1], s[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    var = psi.mean(axis=1).var(ddof=1) / len(pos) + psi.mean(axis=0).var(ddof=1) / len(neg)
    r = stats.auc_ci(y, s)
    assert r["se"] == pytest.approx(np.sqrt(var), rel=1e-10)
    assert r["lo"] == pytest.approx(r["auc"] - 1.959963984540054 * r["se"], rel=1e-9)


def test_delong_close_to_bootstrap() -> None:
    rng = np.random.default_rng(5)
    y = np.r_[np.ones(60, int), np.zeros(140, int)]
    s = rng.normal(y * 1.2, 1.0)
    d = stats.auc_ci(y, s, method="delong")
    b = stats.auc_ci(y, s, method="bootstrap", n_boot=2000, seed=1)
    assert d["auc"] == b["auc"]
    assert b["method"] == "bootstrap" and d["method"] == "delong"
    assert abs(d["lo"] - b["lo"]) < 0.02 and abs(d["hi"] - b["hi"]) < 0.02
    assert abs(d["se"] - b["se"]) / d["se"] < 0.15
    assert stats.auc_ci(y, s, method="bootstrap", seed=1) == b  # seeded: reproducible


def test_auc_needs_both_classes_and_per_fold() -> None:
    with pytest.raises(SpinefxError, match="both"):
        stats.auc_ci([1, 1, 1], [0.1, 0.2, 0.3])
    pp = pd.DataFrame(
        {
            "patient_id": [f"p{i}" for i in range(8)],
            "label": [
                "malignant",
                "benign",
                "malignant",
                "benign",
                "benign",
                "benign",
                "malignant",
                "benign",
            ],
            "fold": [1, 1, 1, 1, 2, 2, 3, 3],
            "prob": [0.9, 0.1, 0.4, 0.6, 0.3, 0.2, 0.8, 0.85],
        }
    )
    f = stats.per_fold_auc(pp).set_index("fold")
    assert f.loc[1, "auc"] == pytest.approx(0.75)  # 0.9 beats both, 0.4 beats 0.1 only
    assert np.isnan(f.loc[2, "auc"]) and f.loc[2, "n_malignant"] == 0
    assert f.loc[3, "auc"] == 0.0
    assert list(f["n"]) == [4, 2, 2]


def test_roc_points_cover_the_square() -> None:
    fpr, tpr, thr = stats.roc_points([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1])
    assert list(fpr) == [0, 0, 0.5, 0.5, 1.0] and list(tpr) == [0, 0.5, 0.5, 1.0, 1.0]
    assert np.isinf(thr[0])
    fpr, tpr, _ = stats.roc_points([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5])  # one tie block: one step
    assert list(fpr) == [0, 1] and list(tpr) == [0, 1]


# ---------------------------------------------------------------------------------------- feature model


def test_firth_single_binary_covariate_equals_haldane_correction() -> None:
    # For one binary covariate Firth's estimate is the log odds ratio with 0.5 added to each cell,
    # finite even when a cell is empty (complete separation of that cell).
    a, b, c, d = 11, 39, 0, 140  # intravertebral mass: 11/50 malignant, 0/140 benign
    x = np.r_[np.ones(a), np.zeros(b), np.ones(c), np.zeros(d)]
    y = np.r_[np.ones(a + b), np.zeros(c + d)]
    t = stats.firth_logit(x[:, None], y, names=["mass"]).set_index("term")
    assert t.loc["mass", "coef"] == pytest.approx(
        np.log((a + 0.5) * (d + 0.5) / ((b + 0.5) * (c + 0.5))), rel=1e-6
    )
    assert np.isfinite(t.loc["mass", "or_lo"]) and t.loc["mass", "or_lo"] > 1
    assert t.loc["mass", "p_value"] < 1e-4


def test_firth_close_to_mle_without_separation_and_profile_bounds() -> None:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(2000, 3))
    y = (rng.random(2000) < 1 / (1 + np.exp(-(0.3 + X @ [1.0, -0.5, 0.0])))).astype(float)
    t = stats.firth_logit(X, y, names=["a", "b", "c"]).set_index("term")
    mle = sm.Logit(y, sm.add_constant(X)).fit(disp=0)
    assert np.allclose(t["coef"].to_numpy(), mle.params, atol=0.01)
    assert np.allclose(t["se"].to_numpy(), mle.bse, rtol=0.01)
    # with plenty of data the profile interval is close to the Wald interval
    w = stats.firth_logit(X, y, names=["a", "b", "c"], ci="wald").set_index("term")
    assert np.allclose(t[["coef_lo", "coef_hi"]], w[["coef_lo", "coef_hi"]], atol=0.02)
    assert (t["or_lo"] < t["odds_ratio"]).all() and (t["odds_ratio"] < t["or_hi"]).all()
    assert t.loc["a", "p_value"] < 1e-10 and t.loc["c", "p_value"] > 0.01


def paper_rate_cohort(seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    truth = paper_truth()
    feats = {"patient_id": truth["patient_id"]}
    for f in FEATURES:
        malignant_rate, benign_rate = (
            PAPER_TABLE1[f][lab][0] / PAPER_TABLE1[f][lab][1] for lab in ("malignant", "benign")
        )
        p = np.where(truth["label"] == "malignant", malignant_rate, benign_rate)
        feats[f] = (rng.random(len(truth)) < p).astype(int)
    return pd.DataFrame(feats), truth


def test_feature_model_cv_on_paper_rate_cohort() -> None:
    feats, truth = paper_rate_cohort()
    summary, coefs = stats.feature_model_cv(feats, truth, k=10, seed=0)
    s = summary.set_index("metric")
    assert list(s.index) == ["accuracy", "sensitivity", "specificity", "auc"]
    # the paper's feature model reached 0.94; a cohort drawn at its rates should land near that
    assert 0.85 <= s.loc["accuracy", "value"] <= 0.99
    assert s.loc["auc", "value"] > 0.9
    assert (s["lo"] <= s["value"]).all() and (s["value"] <= s["hi"]).all()
    assert (s["k"] == 10).all() and s.loc["sensitivity", "n"] == 50
    c = coefs.set_index("term")
    assert list(c.index) == ["intercept", *FEATURES]
    assert np.isfinite(c["coef"]).all()  # no blow-up despite near separation
    assert c.loc["diffuse_signal_change", "or_lo"] > 1
    # the default split is spinefx.learn.folds.assign_folds: passing that table gives identical results
    folds = assign_folds(truth, 10, 0)
    summary2, _ = stats.feature_model_cv(feats, truth, folds=folds, coef_ci="wald")
    pd.testing.assert_frame_equal(summary, summary2)
    other, _ = stats.feature_model_cv(feats, truth, folds=assign_folds(truth, 5, 1), coef_ci="wald")
    assert (other["k"] == 5).all()


def test_feature_model_constant_feature_and_missing_fold() -> None:
    feats, truth = paper_rate_cohort(seed=2)
    feats["fluid_or_necrotic_cleft"] = 0  # never present: cannot be estimated, must not break the fit
    labels = truth.set_index("patient_id")["label"]  # a Series works as truth too
    summary, coefs = stats.feature_model_cv(feats, labels, k=5, seed=0, coef_ci="wald")
    c = coefs.set_index("term")
    assert np.isnan(c.loc["fluid_or_necrotic_cleft", "coef"])
    assert np.isfinite(c.drop("fluid_or_necrotic_cleft")["coef"]).all()
    assert summary.set_index("metric").loc["accuracy", "n"] == 190
    folds = assign_folds(truth, 5, 0).iloc[1:]  # m000 has no fold
    with pytest.raises(SpinefxError, match="m000"):
        stats.feature_model_cv(feats, labels, folds=folds)


def test_feature_model_survives_collinear_features_in_tiny_folds() -> None:
    """8 patients, 2 folds: the training splits have more features than patients and duplicate
    columns; the fit keeps an independent set of columns instead of failing on a singular matrix."""
    rng = np.random.default_rng(4)
    ids = [f"p{i}" for i in range(8)]
    labels = ["malignant"] * 4 + ["benign"] * 4
    feats = pd.DataFrame({"patient_id": ids})
    for j, f in enumerate(FEATURES):
        feats[f] = rng.integers(0, 2, 8) if j % 3 else [1, 1, 1, 0, 0, 0, 0, 1]
    truth = pd.DataFrame({"patient_id": ids, "label": labels})
    folds = pd.DataFrame({"patient_id": ids, "fold": [1, 2] * 4})
    summary, coefs = stats.feature_model_cv(feats, truth, folds=folds)
    values = summary.set_index("metric")["value"]
    assert np.isfinite(values[["accuracy", "sensitivity", "specificity"]]).all()
    assert values["accuracy"] == pytest.approx((values["sensitivity"] * 4 + values["specificity"] * 4) / 8)
    estimable = coefs.dropna(subset=["coef"])
    assert 1 < len(estimable) <= 8  # intercept + at most n-1 independent columns
    assert coefs["term"].tolist()[0] == "intercept"


def test_auc_ci_is_undefined_not_a_point_at_perfect_separation() -> None:
    r = stats.auc_ci([1, 1, 0, 0, 0], [0.9, 0.8, 0.3, 0.2, 0.1])
    assert r["auc"] == 1.0 and r["se"] == 0.0
    assert np.isnan(r["lo"]) and np.isnan(r["hi"])
    assert "undefined" in r["method"]
    ok = stats.auc_ci([1, 1, 0, 0, 0], [0.9, 0.2, 0.3, 0.25, 0.1])
    assert ok["lo"] < ok["auc"] < ok["hi"] and ok["method"] == "delong"
