"""Temperature scaling of a head's per-second logits (Guo et al., 2017, "On Calibration of Modern Neural Networks").

One scalar ``T`` divides the logits; it is fitted on held-out clips by minimising the negative log-likelihood of
their valid seconds against their clip's class. Argmaxes, hence votes, do not change. Expected calibration error:
15 equal-width confidence bins over the valid seconds, ``sum_b |B_b| / n * |accuracy(B_b) - confidence(B_b)|``.
"""
from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

ECE_BINS = 15
TEMPERATURE_RANGE = (0.05, 20.0)


def log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``log softmax(logits / temperature)`` over the last axis, float64."""
    from scipy.special import log_softmax as _log_softmax

    return _log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=-1)


def _valid_seconds(logits: np.ndarray, mask: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``(n, T, K)`` of the valid seconds of labelled clips -> ``(N, K)`` float64 and their classes ``(N,)``."""
    labelled = np.asarray(targets) >= 0
    valid = np.asarray(mask, bool) & labelled[:, None]
    classes = np.broadcast_to(np.asarray(targets)[:, None], valid.shape)[valid]
    return np.asarray(logits, dtype=np.float64)[valid], classes


def nll(logits: np.ndarray, classes: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (nats) of seconds ``(N, K)`` against ``classes`` ``(N,)``."""
    return float(-log_softmax(logits, temperature)[np.arange(len(classes)), classes].mean()) + 0.0  # no -0.0


def expected_calibration_error(logits: np.ndarray, classes: np.ndarray, temperature: float = 1.0) -> float:
    """ECE over :data:`ECE_BINS` equal-width bins of the top-class probability."""
    probs = np.exp(log_softmax(logits, temperature))
    confidence, correct = probs.max(-1), probs.argmax(-1) == classes
    bins = np.minimum((confidence * ECE_BINS).astype(int), ECE_BINS - 1)
    total = 0.0
    for b in np.unique(bins):
        inside = bins == b
        total += inside.sum() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total / len(classes))


def fit_temperature(logits: np.ndarray, mask: np.ndarray, targets: np.ndarray) -> float:
    """The ``T`` minimising the NLL of held-out clips: logits ``(n, T_s, K)``, ``mask`` ``(n, T_s)``, clip classes
    ``targets`` ``(n,)`` (-1 = unlabelled, ignored)."""
    from scipy.optimize import minimize_scalar

    seconds, classes = _valid_seconds(logits, mask, targets)
    if len(classes) == 0:
        raise ValueError("temperature scaling needs held-out labelled seconds; found none")
    lo, hi = np.log(TEMPERATURE_RANGE)
    found = minimize_scalar(lambda log_t: nll(seconds, classes, float(np.exp(log_t))), bounds=(lo, hi), method="bounded")
    temperature = float(np.exp(found.x))
    if min(abs(found.x - lo), abs(found.x - hi)) < 1e-3:
        logger.warning("temperature %.3g at the bound of %s: the held-out seconds (%d) are %s", temperature,
                       TEMPERATURE_RANGE, len(classes), "all classified right, sharper is always better there"
                       if found.x - lo < 1e-3 else "mostly wrong")
    return temperature


def calibration_report(logits: np.ndarray, mask: np.ndarray, targets: np.ndarray, temperature: float) -> dict:
    """NLL (nats) and ECE of clips' valid seconds before (``T = 1``) and after dividing the logits by ``temperature``."""
    seconds, classes = _valid_seconds(logits, mask, targets)
    if len(classes) == 0:
        return {"n_seconds": 0}
    return {
        "n_seconds": int(len(classes)),
        "nll_before": nll(seconds, classes), "nll_after": nll(seconds, classes, temperature),
        "ece_before": expected_calibration_error(seconds, classes),
        "ece_after": expected_calibration_error(seconds, classes, temperature),
    }
