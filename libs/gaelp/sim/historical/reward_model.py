"""A click model q(x, a, position) for the direct-method and doubly-robust estimators.

Logistic regression whose logit is additive: user features + item + position + a coefficient on
the user-item affinity. Being additive, predictions for every item of every row are one (n, K)
array. Fitted by Newton's method with an L2 penalty (a few iterations on ~200 parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gaelp.sim.historical.obd import LoggedBanditFeedback


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass
class ClickModel:
    l2: float = 1.0
    iterations: int = 30
    user_weights: np.ndarray | None = None
    item_weights: np.ndarray | None = None
    position_weights: np.ndarray | None = None
    affinity_weight: float = 0.0
    bias: float = 0.0
    _weights: np.ndarray | None = None
    _design_cache: tuple[LoggedBanditFeedback, np.ndarray] | None = None
    _hessian_inverse: np.ndarray | None = None

    def _design(self, data: LoggedBanditFeedback) -> np.ndarray:
        if self._design_cache is not None and self._design_cache[0] is data:
            return self._design_cache[1]
        n = data.n_rounds
        items = np.zeros((n, data.n_actions))
        items[np.arange(n), data.action] = 1.0
        positions = np.zeros((n, data.n_positions))
        positions[np.arange(n), data.position] = 1.0
        chosen_affinity = data.affinity[np.arange(n), data.action][:, None]
        design = np.hstack([np.ones((n, 1)), data.context, items, positions, chosen_affinity])
        self._design_cache = (data, design)
        return design

    def fit(self, data: LoggedBanditFeedback, row_weights: np.ndarray | None = None) -> ClickModel:
        """Fit by Newton's method; row_weights (e.g. bootstrap counts) weigh each logged row."""
        x = self._design(data)
        y = data.reward
        c = np.ones_like(y) if row_weights is None else row_weights
        w = self._weights if self._weights is not None else np.zeros(x.shape[1])
        if self._weights is None:
            w[0] = np.log(max(y.mean(), 1e-4) / max(1.0 - y.mean(), 1e-4))
        penalty = np.full(x.shape[1], self.l2)
        penalty[0] = 0.0  # the intercept is not shrunk
        for _ in range(self.iterations):
            p = _sigmoid(x @ w)
            gradient = x.T @ (c * (p - y)) + penalty * w
            hessian = (x * (c * p * (1 - p))[:, None]).T @ x + np.diag(penalty + 1e-9)
            step = np.linalg.solve(hessian, gradient)
            w = w - step
            if np.max(np.abs(step)) < 1e-6:
                break
        self._hessian_inverse = np.linalg.inv(hessian)
        self._set(w, data)
        return self

    def refit(self, data: LoggedBanditFeedback, row_weights: np.ndarray, newton_steps: int = 4) -> np.ndarray:
        """Predictions of this model refitted on reweighted rows (bootstrap counts): warm-started
        from the current fit, with its Hessian held fixed, so one refit costs a few mat-vecs."""
        if self._weights is None or self._hessian_inverse is None:
            raise RuntimeError("fit the click model first")
        x, y = self._design(data), data.reward
        penalty = np.full(x.shape[1], self.l2)
        penalty[0] = 0.0
        w = self._weights.copy()
        for _ in range(newton_steps):
            gradient = x.T @ (row_weights * (_sigmoid(x @ w) - y)) + penalty * w
            w -= self._hessian_inverse @ gradient
        clone = ClickModel(l2=self.l2)
        clone._set(w, data)
        return clone.predict_all_actions(data)

    def _set(self, w: np.ndarray, data: LoggedBanditFeedback) -> None:
        self._weights = w
        d_user, k, m = data.context.shape[1], data.n_actions, data.n_positions
        self.bias = float(w[0])
        self.user_weights = w[1 : 1 + d_user]
        self.item_weights = w[1 + d_user : 1 + d_user + k]
        self.position_weights = w[1 + d_user + k : 1 + d_user + k + m]
        self.affinity_weight = float(w[-1])

    def predict_all_actions(self, data: LoggedBanditFeedback) -> np.ndarray:
        """(n, n_actions): click probability of each item at each row's own position."""
        if self.user_weights is None or self.item_weights is None or self.position_weights is None:
            raise RuntimeError("fit the click model first")
        row_logit = self.bias + data.context @ self.user_weights + self.position_weights[data.position]
        logits = row_logit[:, None] + self.item_weights[None, :] + self.affinity_weight * data.affinity
        return _sigmoid(logits)
