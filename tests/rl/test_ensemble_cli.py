"""The deployment-time ensemble: built from checkpoints by the CLI, weighted by evaluation returns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from gaelp.config import load_settings
from gaelp.rl import make_agent
from gaelp.rl.ensemble_cli import load_ensemble, main
from gaelp.rl.rollout import make_vector_env

PPO = {"n_steps": 32, "batch_size": 256, "gae_lambda": 0.8, "gamma": 0.98, "n_epochs": 20,
       "learning_rate": 1e-3}


def test_the_cli_weights_members_by_their_returns_and_the_file_rebuilds_the_ensemble(tmp_path: Path) -> None:
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(yaml.safe_dump({"training": {
        "space_entry_point": "gymnasium:make", "space_kwargs": {"id": "CartPole-v1"},
        "hyperparameters": {"ppo": PPO},
    }}))
    env = make_vector_env("CartPole-v1", 8)
    trained = make_agent("ppo", env.single_observation_space, env.single_action_space, PPO, "cpu", seed=0)
    trained.learn(env, 12_000)
    untrained = make_agent("ppo", env.single_observation_space, env.single_action_space, PPO, "cpu", seed=1)
    trained.save_checkpoint(tmp_path / "trained.pt")
    untrained.save_checkpoint(tmp_path / "untrained.pt")

    out = tmp_path / "ensemble.pt"
    assert main(["--config", str(settings_file), "--checkpoint", str(tmp_path / "untrained.pt"),
                 "--checkpoint", str(tmp_path / "trained.pt"), "--episodes", "4", "--temperature", "10",
                 "--out", str(out)]) == 0

    ensemble = load_ensemble(out, load_settings(settings_file).training)
    weights = ensemble.weights()
    assert ensemble.scores[1] > ensemble.scores[0] + 50, ensemble.scores
    assert weights[1] > 0.99, weights
    obs = np.asarray(env.reset(seed=3)[0], np.float32)
    combined, _, _ = ensemble.policy.act(obs)
    expected, _, _ = trained.act(obs, deterministic=True)
    np.testing.assert_array_equal(combined, expected)  # the better member carries the vote


def test_the_cli_needs_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "e.pt")])
