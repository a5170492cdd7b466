"""Off-policy estimators on a synthetic log with a known value, and the OBD benchmark."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from gaelp.cli.main import main
from gaelp.sim.historical import ope
from gaelp.sim.historical.benchmark import average_action_distribution, run_obd_benchmark
from gaelp.sim.historical.obd import LoggedBanditFeedback, load_obd
from gaelp.sim.historical.ope import ESTIMATORS, OffPolicyInput, estimate_all
from gaelp.sim.historical.reward_model import ClickModel


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def synthetic_log(n: int, seed: int) -> tuple[LoggedBanditFeedback, np.ndarray, float]:
    """Logged by a softmax policy over 6 items; returns the log, the evaluation policy's action
    distribution per row, and the evaluation policy's exact value on these contexts."""
    rng = np.random.default_rng(seed)
    k, segments = 6, 4
    segment = rng.integers(0, segments, size=n)
    context = np.eye(segments)[segment]
    logit = -1.6 + rng.normal(0, 0.5, size=segments)[segment][:, None] + np.linspace(-0.8, 0.8, k)[None, :]
    true_ctr = 1 / (1 + np.exp(-logit))
    logging = _softmax(rng.normal(0, 0.6, size=(segments, k)))[segment]
    target = _softmax(rng.normal(0, 1.0, size=(segments, k)) + np.linspace(0, 1.0, k))[segment]
    action = np.array([rng.choice(k, p=p) for p in logging])
    rows = np.arange(n)
    log = LoggedBanditFeedback(
        policy="synthetic",
        campaign="synthetic",
        n_actions=k,
        n_positions=1,
        action=action,
        position=np.zeros(n, dtype=np.int64),
        reward=(rng.random(n) < true_ctr[rows, action]).astype(np.float64),
        pscore=logging[rows, action],
        context=context,
        affinity=np.zeros((n, k)),
        timestamp=np.arange(n).astype(str),
    )
    return log, target, float((target * true_ctr).sum(axis=1).mean())


def test_estimators_cover_the_known_value_of_a_synthetic_policy() -> None:
    log, target, truth = synthetic_log(n=20_000, seed=1)
    model = ClickModel(l2=0.1).fit(log)
    data = OffPolicyInput(
        reward=log.reward,
        action=log.action,
        pscore=log.pscore,
        action_dist=target,
        estimated_rewards=model.predict_all_actions(log),
    )
    results = estimate_all(data, n_bootstrap=500, alpha=0.01, seed=0,
                           refit=lambda counts: model.refit(log, counts), n_refit_bootstrap=60)  # fmt: skip
    assert set(results) == set(ESTIMATORS)
    for name, result in results.items():
        assert result.ci_low <= truth <= result.ci_high, (name, result, truth)
        assert result.ci_low <= result.estimate <= result.ci_high, name
        assert result.relative_error(truth) < 0.1, (name, result, truth)
        assert result.ci_high - result.ci_low < 0.3 * truth, (name, result)
    # The logging policy's own value is far enough from the target's that coverage is not trivial.
    assert abs(log.reward.mean() - truth) / truth > 0.1


def test_bts_action_distribution_is_a_distribution_per_position(obd_root: Path) -> None:
    bts = load_obd(obd_root, "bts", "men")
    table = average_action_distribution(bts)
    assert table.shape == (bts.n_positions, bts.n_actions) == (3, 34)
    np.testing.assert_allclose(table.sum(axis=1), 1.0)
    assert (table >= 0).all()


def test_obd_benchmark_values_bts_from_random_logs(obd_root: Path) -> None:
    result = run_obd_benchmark(obd_root, "men", n_bootstrap=200, n_refit_bootstrap=20)
    assert result.truth == pytest.approx(load_obd(obd_root, "bts", "men").reward.mean())
    for name, estimate in result.estimates.items():
        assert estimate.ci_low <= estimate.estimate <= estimate.ci_high, name
        assert estimate.relative_error(result.truth) < 0.5, (name, estimate)


def test_historical_benchmark_command_prints_json(obd_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["historical", "benchmark", "--campaign", "women", "--json", "--bootstrap", "100",
                 "--refit-bootstrap", "10", "--cache-dir", str(obd_root.parent)])  # fmt: skip
    assert code == 0
    output = json.loads(capsys.readouterr().out)
    assert set(output) == {"truth", "estimators"}
    assert set(output["estimators"]) == {"ipw", "snipw", "dm", "dr"}
    for values in output["estimators"].values():
        assert set(values) == {"estimate", "ci_low", "ci_high", "relative_error"}


def clustered_log(clusters: int, rows_per_cluster: int, seed: int) -> tuple[OffPolicyInput, float]:
    """Rounds grouped in clusters (the hours of a campaign) that share a random effect on the
    reward; logged uniformly over 3 arms, evaluated policy always plays arm 0 (true value 1.0)."""
    rng = np.random.default_rng(seed)
    n = clusters * rows_per_cluster
    cluster = np.repeat(np.arange(clusters), rows_per_cluster)
    level = np.exp(rng.normal(0.0, 0.8, size=clusters) - 0.32)[cluster]  # mean 1 per cluster
    action = rng.integers(0, 3, size=n)
    reward = rng.poisson(level * np.where(action == 0, 1.0, 0.5)).astype(np.float64)
    action_dist = np.zeros((n, 3))
    action_dist[:, 0] = 1.0
    data = OffPolicyInput(reward=reward, action=action, pscore=np.full(n, 1 / 3), action_dist=action_dist,
                          cluster=cluster)  # fmt: skip
    return data, 1.0


def test_intervals_on_clustered_rounds_resample_clusters() -> None:
    """Rounds of one campaign are correlated: an interval that resamples rounds one by one is too
    narrow and misses the truth far more often than 5%; resampling clusters keeps the 95% level."""
    cluster_hits, row_hits, replications = 0, 0, 120
    for seed in range(replications):
        data, truth = clustered_log(clusters=40, rows_per_cluster=24, seed=seed)
        by_cluster = ope.estimate(data, "snipw", n_bootstrap=300, seed=seed)
        by_row = ope.estimate(dataclasses.replace(data, cluster=None), "snipw", n_bootstrap=300, seed=seed)
        assert by_cluster.estimate == by_row.estimate
        cluster_hits += by_cluster.ci_low <= truth <= by_cluster.ci_high
        row_hits += by_row.ci_low <= truth <= by_row.ci_high
    assert cluster_hits / replications >= 0.88, cluster_hits
    assert row_hits / replications < 0.8, row_hits
