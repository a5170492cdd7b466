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
    iterations: int = 25
    user_weights: np.ndarray | None = None
    item_weights: np.ndarray | None = None
    position_weights: np.ndarray | None = None
    affinity_weight: float = 0.0
    bias: float = 0.0

    def _design(self, data: LoggedBanditFeedback) -> np.ndarray:
        n = data.n_rounds
        items = np.zeros((n, data.n_actions))
        items[np.arange(n), data.action] = 1.0
        positions = np.zeros((n, data.n_positions))
        positions[np.arange(n), data.position] = 1.0
        chosen_affinity = data.affinity[np.arange(n), data.action][:, None]
        return np.hstack([np.ones((n, 1)), data.context, items, positions, chosen_affinity])

    def fit(self, data: LoggedBanditFeedback) -> ClickModel:
        x = self._design(data)
        y = data.reward
        w = np.zeros(x.shape[1])
        w[0] = np.log(max(y.mean(), 1e-4) / max(1.0 - y.mean(), 1e-4))
        penalty = np.full(x.shape[1], self.l2)
        penalty[0] = 0.0  # the intercept is not shrunk
        for _ in range(self.iterations):
            p = _sigmoid(x @ w)
            gradient = x.T @ (p - y) + penalty * w
            hessian = (x * (p * (1 - p))[:, None]).T @ x + np.diag(penalty + 1e-9)
            step = np.linalg.solve(hessian, gradient)
            w -= step
            if np.max(np.abs(step)) < 1e-8:
                break
        d_user, k, m = data.context.shape[1], data.n_actions, data.n_positions
        self.bias = float(w[0])
        self.user_weights = w[1 : 1 + d_user]
        self.item_weights = w[1 + d_user : 1 + d_user + k]
        self.position_weights = w[1 + d_user + k : 1 + d_user + k + m]
        self.affinity_weight = float(w[-1])
        return self

    def predict_all_actions(self, data: LoggedBanditFeedback) -> np.ndarray:
        """(n, n_actions): click probability of each item at each row's own position."""
        if self.user_weights is None or self.item_weights is None or self.position_weights is None:
            raise RuntimeError("fit the click model first")
        row_logit = self.bias + data.context @ self.user_weights + self.position_weights[data.position]
        logits = row_logit[:, None] + self.item_weights[None, :] + self.affinity_weight * data.affinity
        return _sigmoid(logits)
