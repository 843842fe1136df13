"""Rank agreement between two scores of the same designs, with bootstrap confidence intervals.

Whether a cheap score can stand in for an expensive one is a question about rankings: does the
design that ranks first small rank first large? Spearman and Kendall answer it; with the 8-20
designs a CPU can afford to train twice, their sampling error is large (a Spearman of 0.8 over 16
designs has a 95 % interval of roughly 0.5-0.93), so every figure comes with a percentile
bootstrap interval over designs. `promote` and `benchmarks/scale_transfer.py` both report it.

Imports nothing of mixnas (numpy and scipy only), so every layer may use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

N_BOOT = 2000


def rank_agreement(x: Sequence[float], y: Sequence[float], n_boot: int = N_BOOT,
                   seed: int = 0) -> dict[str, Any]:
    """Spearman and Kendall rank correlations of `x` and `y` with bootstrap 95 % intervals.

    Args:
        x, y: two scores of the same designs, in the same order.
        n_boot: bootstrap resamples (designs drawn with replacement; resamples in which either
            score is constant are skipped).
        seed: the resampling seed (the intervals are reproducible).

    Returns:
        `n`, `spearman`, `spearman_p`, `kendall`, `kendall_p`, `ci95` (Spearman's interval) and
        `kendall_ci95`; correlations and intervals are None where undefined (fewer than 3
        designs, or a constant score).
    """
    from scipy.stats import kendalltau, spearmanr

    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xs.shape != ys.shape:
        raise ValueError(f"rank_agreement: {len(xs)} x values but {len(ys)} y values")
    out: dict[str, Any] = {"n": int(len(xs)), "spearman": None, "spearman_p": None,
                           "kendall": None, "kendall_p": None, "ci95": None,
                           "kendall_ci95": None}
    if len(xs) < 3 or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return out
    s, k = spearmanr(xs, ys), kendalltau(xs, ys)
    rng = np.random.default_rng(seed)
    boot_s, boot_k = [], []
    for _ in range(n_boot):
        idx = rng.integers(len(xs), size=len(xs))
        bx, by = xs[idx], ys[idx]
        if np.ptp(bx) == 0 or np.ptp(by) == 0:
            continue
        boot_s.append(spearmanr(bx, by).statistic)
        boot_k.append(kendalltau(bx, by).statistic)
    out.update(spearman=_round(s.statistic), spearman_p=float(s.pvalue),
               kendall=_round(k.statistic), kendall_p=float(k.pvalue),
               ci95=_interval(boot_s), kendall_ci95=_interval(boot_k))
    return out


def _round(value: float) -> float:
    return round(float(value), 3)


def _interval(values: list[float]) -> list[float] | None:
    values = [v for v in values if v == v]  # kendalltau can give NaN on heavy ties
    if not values:
        return None
    return [_round(np.percentile(values, 2.5)), _round(np.percentile(values, 97.5))]
