"""Regression models with uncertainty for the surrogate sampler, and their transfer across studies.

Each model predicts one objective (in loss orientation: smaller is better) with a mean and a
standard deviation, so the sampler can weigh a confident guess against a promising unknown:

- `forest` (the default): scikit-learn's random forest; the mean and spread of its trees'
  predictions. Fast, needs no feature scaling, copes with one-hot decisions and few points.
- `gp`: scikit-learn's Gaussian process, Matern 5/2 with one length scale per feature plus noise.
- `gbm`: scikit-learn's gradient boosting fitted three times with the quantile loss (16th, 50th,
  84th percentiles); half the 16-84 spread is the standard deviation.

`benchmarks/warm_start.py` measured all three on the tabular benchmark; its JSON says why
`forest` is the default.

`TransferModel` learns from earlier studies as well (warm starts), in the manner of RGPE (Feurer
et al., "Scalable Meta-Learning for Bayesian Optimization", 2018): one model per earlier study,
fitted once on that study's results, plus one on this study's; the prediction is their weighted
mix, each weight being how often (over bootstrap resamples of this study's results) that model
ranks this study's designs best. An earlier study that ranks this task's designs wrongly loses
its weight as soon as this study has results that show it: that is how negative transfer is
limited. Values are standardised per study, so a study of accuracy and one of bits per byte can
inform each other through their rankings alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MODELS = ("forest", "gp", "gbm")
MIN_STD = 1e-6


class Regressor:
    """One objective's model: `fit(X, y)` then `predict(X) -> (mean, std)`."""

    def __init__(self, kind: str = "forest", seed: int = 0):
        if kind not in MODELS:
            raise ValueError(f"unknown surrogate model {kind!r}; choose one of {', '.join(MODELS)}")
        self.kind, self.seed = kind, seed
        self._models: list = []
        self._constant: float | None = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> Regressor:
        """Fit on X (n, d) and y (n,); with fewer than 2 distinct values, predict their mean."""
        y = np.asarray(y, dtype=float)
        if len(y) < 2 or np.ptp(y) == 0:
            self._constant = float(y.mean()) if len(y) else 0.0
            return self
        self._constant = None
        self._models = _fit(self.kind, X, y, self.seed)
        return self

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean (n,) and standard deviation (n,) of the prediction at each row of X (n, d)."""
        if self._constant is not None:
            return np.full(len(X), self._constant), np.full(len(X), MIN_STD)
        if self.kind == "forest":
            X32 = np.asarray(X, dtype=np.float32)  # what fitted trees take, checked once here
            per_tree = np.stack([tree.predict(X32, check_input=False)
                                 for tree in self._models[0].estimators_])
            return per_tree.mean(0), np.maximum(per_tree.std(0), MIN_STD)
        if self.kind == "gp":
            mean, std = self._models[0].predict(X, return_std=True)
            return mean, np.maximum(std, MIN_STD)
        low, mid, high = (m.predict(X) for m in self._models)
        return mid, np.maximum((high - low) / 2, MIN_STD)


def _fit(kind: str, X: np.ndarray, y: np.ndarray, seed: int) -> list:
    if kind == "forest":
        from sklearn.ensemble import RandomForestRegressor

        forest = RandomForestRegressor(n_estimators=32, min_samples_leaf=1, max_features=0.6,
                                       bootstrap=True, random_state=seed)
        return [forest.fit(X, y)]
    if kind == "gp":
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        kernel = ConstantKernel() * Matern(length_scale=np.ones(X.shape[1]), nu=2.5,
                                           length_scale_bounds=(1e-2, 1e3)) + WhiteKernel(1e-2)
        gp = GaussianProcessRegressor(kernel, normalize_y=True, random_state=seed,
                                      n_restarts_optimizer=1)
        return [_ScaledGP(make_pipeline(StandardScaler()), gp).fit(X, y)]
    from sklearn.ensemble import GradientBoostingRegressor

    return [
        GradientBoostingRegressor(loss="quantile", alpha=q, n_estimators=100, max_depth=3,
                                  learning_rate=0.1, min_samples_leaf=1, random_state=seed)
        .fit(X, y)
        for q in (0.16, 0.5, 0.84)
    ]


class _ScaledGP:
    """A GP on standardised features (length scales are then comparable across features)."""

    def __init__(self, scaler, gp):
        self.scaler, self.gp = scaler, gp

    def fit(self, X, y):
        import warnings

        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.gp.fit(self.scaler.fit_transform(X), y)
        return self

    def predict(self, X, return_std=True):
        return self.gp.predict(self.scaler.transform(X), return_std=return_std)


@dataclass
class Standardiser:
    """y -> (y - mean) / std of one study's values (std 1 when they are all equal)."""

    mean: float
    std: float

    @classmethod
    def of(cls, y: np.ndarray) -> Standardiser:
        std = float(np.std(y)) if len(y) > 1 else 0.0
        return cls(float(np.mean(y)) if len(y) else 0.0, std if std > 0 else 1.0)

    def __call__(self, y: np.ndarray) -> np.ndarray:
        return (np.asarray(y, dtype=float) - self.mean) / self.std


@dataclass
class SourceData:
    """An earlier study's designs (features X) and one objective's values there (loss, y)."""

    name: str
    X: np.ndarray
    y: np.ndarray


class TransferModel:
    """One objective's prediction from this study's results and earlier studies' (see module).

    Args:
        kind: the regressor (`forest`, `gp`, `gbm`).
        sources: earlier studies' data for this objective (may be empty: then a plain model).
        seed: seeds the regressors and the bootstrap.
    """

    def __init__(self, kind: str, sources: Sequence[SourceData] = (), seed: int = 0,
                 bootstraps: int = 64):
        self.kind, self.seed, self.bootstraps = kind, seed, bootstraps
        self.sources = [
            (s.name, Regressor(kind, seed).fit(s.X, Standardiser.of(s.y)(s.y)))
            for s in sources if len(s.y)
        ]
        self.target: Regressor | None = None
        self.scale = Standardiser(0.0, 1.0)
        self.weights: dict[str, float] = {}

    def fit(self, X: np.ndarray, y: np.ndarray) -> TransferModel:
        """Fit this study's model on X (n, d), y (n,) and re-weigh the earlier studies."""
        y = np.asarray(y, dtype=float)
        self.scale = Standardiser.of(y)
        z = self.scale(y)
        self.target = Regressor(self.kind, self.seed).fit(X, z) if len(y) else None
        self.weights = self._weights(X, z)
        return self

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation (n,) in this study's units."""
        mean, var = np.zeros(len(X)), np.zeros(len(X))
        models = dict(self.sources)
        if self.target is not None:
            models["<this study>"] = self.target
        for name, weight in self.weights.items():
            if weight > 0:
                mu, sd = models[name].predict(X)
                mean += weight * mu
                var += weight * (sd**2 + mu**2)
        var = np.maximum(var - mean**2, MIN_STD**2)  # the mixture's variance
        return self.scale.mean + self.scale.std * mean, self.scale.std * np.sqrt(var)

    def _weights(self, X: np.ndarray, z: np.ndarray) -> dict[str, float]:
        """Ranking weights: how often each model has the fewest misranked pairs of this study's
        results over bootstrap resamples; this study's own model is scored out of fold."""
        if not self.sources:
            return {"<this study>": 1.0}
        names = [name for name, _ in self.sources]
        if len(z) < 3:  # too few results to rank: trust the earlier studies and these alike
            names += ["<this study>"] if len(z) else []
            return dict.fromkeys(names, 1.0 / len(names))
        predictions = [model.predict(X)[0] for _, model in self.sources]
        predictions.append(_out_of_fold(self.kind, X, z, self.seed))
        names.append("<this study>")
        rng = np.random.default_rng(self.seed)
        wins = np.zeros(len(names))
        for _ in range(self.bootstraps):
            idx = rng.integers(0, len(z), len(z))
            losses = np.array([_misranked(p[idx], z[idx]) for p in predictions])
            best = np.flatnonzero(losses == losses.min())
            wins[best] += 1.0 / len(best)
        return dict(zip(names, (wins / wins.sum()).tolist()))


def _out_of_fold(kind: str, X: np.ndarray, z: np.ndarray, seed: int, folds: int = 5) -> np.ndarray:
    """Predictions for each row from a model that did not see it (k-fold, leave-one-out when
    there are at most `folds` rows)."""
    n = len(z)
    order = np.random.default_rng(seed).permutation(n)
    out = np.zeros(n)
    for f in range(min(folds, n)):
        test = order[f::min(folds, n)]
        train = np.setdiff1d(order, test)
        out[test] = Regressor(kind, seed).fit(X[train], z[train]).predict(X[test])[0]
    return out


def _misranked(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of pairs whose order the prediction gets wrong (ties in truth not counted)."""
    dp = np.sign(prediction[:, None] - prediction[None, :])
    dt = np.sign(truth[:, None] - truth[None, :])
    pairs = dt != 0
    return float(((dp != dt) & pairs).sum() / max(pairs.sum(), 1))
