"""Brier score, calibration intercept/slope and net benefit against direct computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize
from scipy.special import expit, logit

from spinefx.errors import SpinefxError
from spinefx.evaluate import calibration_stats as cs


def test_brier_by_hand() -> None:
    assert cs.brier_score([1, 0, 1, 0], [0.9, 0.2, 0.4, 0.0]) == pytest.approx((0.01 + 0.04 + 0.36 + 0) / 4)
    with pytest.raises(SpinefxError):
        cs.brier_score([1, 0], [0.5, 1.5])


def test_intercept_and_slope_against_direct_likelihood_maximisation() -> None:
    rng = np.random.default_rng(0)
    lp = rng.normal(0, 1.5, 400)
    y = (rng.random(400) < expit(0.4 + 0.6 * lp)).astype(int)  # miscalibrated on purpose
    p = expit(lp)
    r = cs.calibration_intercept_slope(y, p)

    def nll(theta: np.ndarray, offset: bool) -> float:
        eta = theta[0] + (lp if offset else theta[1] * lp)
        return float(np.sum(np.logaddexp(0, eta) - y * eta))

    a = optimize.minimize(nll, [0.0], args=(True,), method="BFGS").x[0]
    ab = optimize.minimize(nll, [0.0, 1.0], args=(False,), method="BFGS").x
    assert r["intercept"] == pytest.approx(a, abs=1e-4)
    assert r["slope"] == pytest.approx(ab[1], abs=1e-4)
    assert r["slope_lo"] < 0.6 < r["slope_hi"] and r["slope_hi"] < 1  # detects the overfit
    assert r["converged"]
    # probabilities that are the truth: intercept ~ 0, slope ~ 1
    yy = (rng.random(4000) < expit(lp.repeat(10))).astype(int)
    good = cs.calibration_intercept_slope(yy, expit(lp.repeat(10)))
    assert good["intercept_lo"] < 0 < good["intercept_hi"] and good["slope_lo"] < 1 < good["slope_hi"]
    assert logit(0.5) == 0  # sanity of the scale used


def test_net_benefit_by_hand() -> None:
    y = [1, 1, 0, 0, 0]
    p = [0.9, 0.3, 0.6, 0.2, 0.1]
    t = cs.net_benefit(y, p, [0.25, 0.5])
    # t = 0.25: act on 0.9, 0.3, 0.6 -> TP 2, FP 1; NB = 2/5 - 1/5 * (0.25 / 0.75)
    assert t.loc[0, "net_benefit_model"] == pytest.approx(2 / 5 - 1 / 5 / 3)
    # t = 0.5: act on 0.9, 0.6 -> TP 1, FP 1
    assert t.loc[1, "net_benefit_model"] == pytest.approx(1 / 5 - 1 / 5)
    assert t.loc[0, "net_benefit_all"] == pytest.approx(0.4 - 0.6 / 3)
    assert (t["net_benefit_none"] == 0).all()
    with pytest.raises(SpinefxError):
        cs.net_benefit(y, p, [0.0])
