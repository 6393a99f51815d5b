"""The simulated assisted-reading table reproduces by hand from the readers' and the model's calls."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from spinefx.errors import SpinefxError
from spinefx.evaluate.assisted import assisted_markdown, assisted_reading_table, override_calls


def cohort():
    #            truth        reader       model calibrated probability
    data = [
        ("a", "malignant", "benign", 0.95),  # model rescues (p=0.9)
        ("b", "malignant", "benign", 0.97),  # model rescues
        ("c", "malignant", "malignant", 0.05),  # model breaks (p=0.9)
        ("d", "malignant", "malignant", 0.60),  # unsure: reader stands
        ("e", "benign", "malignant", 0.02),  # model rescues
        ("f", "benign", "benign", 0.50),
        ("g", "benign", "benign", 0.92),  # model breaks
        ("h", "benign", "malignant", 0.85),  # not confident enough at 0.9: reader stands
    ]
    readers = pd.DataFrame(
        [(p, "r1", call) for p, _, call, _ in data], columns=["patient_id", "reader", "call"]
    )
    model = pd.DataFrame(
        [(p, t, q) for p, t, _, q in data], columns=["patient_id", "label", "prob_calibrated"]
    )
    return readers, model


def test_override_rule_by_hand():
    readers, model = cohort()
    got = override_calls(readers["call"].to_numpy(), model["prob_calibrated"].to_numpy(), 0.9)
    assert list(got) == [
        "malignant",
        "malignant",
        "benign",
        "malignant",
        "benign",
        "benign",
        "malignant",
        "malignant",
    ]
    with pytest.raises(SpinefxError):
        override_calls(readers["call"].to_numpy(), model["prob_calibrated"].to_numpy(), 0.4)


def test_table_reproduces_by_hand():
    readers, model = cohort()
    t = assisted_reading_table(readers, model, [0.9]).set_index("rule")
    un, ov = t.loc["unaided"], t.loc["override at 0.9"]
    # unaided: malignant a,b wrong, c,d right -> sens 2/4; benign e,h wrong, f,g right -> spec 2/4
    assert (un["tp"], un["fn"], un["tn"], un["fp"]) == (2, 2, 2, 2)
    # override at 0.9: malignant a,b,d right, c wrong -> 3/4; benign e,f right, g,h wrong -> 2/4
    assert (ov["tp"], ov["fn"], ov["tn"], ov["fp"]) == (3, 1, 2, 2)
    assert ov["changed"] == 5  # a, b, c, e, g and ov["sensitivity"] == 0.75 and ov["specificity"] == 0.5
    # McNemar on malignant: assisted right & unaided wrong = 2 (a, b), the reverse 1 (c)
    assert (ov["mcnemar_sensitivity_b"], ov["mcnemar_sensitivity_c"]) == (2, 1)
    assert ov["mcnemar_sensitivity_p"] == pytest.approx(binomtest(1, 3, 0.5).pvalue)
    assert (ov["mcnemar_specificity_b"], ov["mcnemar_specificity_c"]) == (1, 1)
    assert ov["mcnemar_specificity_p"] == pytest.approx(1.0)
    assert np.isnan(un["mcnemar_sensitivity_p"])
    # Clopper-Pearson for 3/4
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(3, 4, method="beta")
    assert (ov["sensitivity_lo"], ov["sensitivity_hi"]) == pytest.approx((lo, hi))


def test_markdown_says_it_is_a_simulation():
    readers, model = cohort()
    md = assisted_markdown(assisted_reading_table(readers, model, [0.9, 0.8]))
    assert "simulated (not a reader study)" in md and "| r1 | override at 0.8 |" in md
