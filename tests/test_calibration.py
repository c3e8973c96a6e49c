"""Temperature scaling and expected calibration error on hand-built logits."""
from __future__ import annotations

import numpy as np
import pytest

from classify.calibration import calibration_report, expected_calibration_error, fit_temperature


def test_ece_known_answer():
    # two seconds at confidence ~0.9 (one right, one wrong) and one at ~0.6, right: bins 13 and 9
    logits = np.log(np.array([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4]]))
    ece = expected_calibration_error(logits, np.array([0, 0, 0]))
    assert ece == pytest.approx((2 * abs(0.5 - 0.9) + abs(1.0 - 0.6)) / 3)


def test_overconfident_logits_get_a_temperature_above_one_and_better_nll_and_ece():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 4, 200)
    logits = rng.normal(size=(200, 3, 4)) * 4
    logits[np.arange(200), :, targets] += 3  # right 3 times out of 4 or so, with probabilities near 0 or 1
    mask = np.ones((200, 3), bool)
    mask[:5, 2] = False  # padded seconds are ignored
    temperature = fit_temperature(logits, mask, targets)
    report = calibration_report(logits, mask, targets, temperature)
    assert temperature > 2 and report["n_seconds"] == 595
    assert report["nll_after"] < report["nll_before"] and report["ece_after"] < report["ece_before"] / 3
    assert calibration_report(logits, mask, targets, 1.0)["nll_after"] == report["nll_before"]
    with pytest.raises(ValueError, match="held-out labelled seconds"):
        fit_temperature(logits, mask, np.full(200, -1))
