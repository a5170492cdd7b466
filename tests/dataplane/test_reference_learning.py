"""Learning through the bus: registry, learner and orchestrator as processes over the broker train
gymnasium reference tasks registered as environment specs, each within a small fixed budget, and
the learner's final policy clearly beats random play (deterministic evaluation, 10 episodes).

The budgets are a fraction of the benchmarks' (benchmarks/rl, --data-plane); the bars sit well
below what the runs reach (in-process seed 0: DQN 20k 292, SAC 3k -409; through the data plane,
seeds 0-2 on one machine: PPO 20k 263-500, the user's agent 15k 441-500) because float results
differ between CPUs and a small budget amplifies them: PPO at 10k reached 183-290 on one machine
and 148 on another, the user's agent at a learning rate of 1e-3 320-500 and 149. PPO at 20k reached
129, 243 and 412 with seeds 0-2 on a third machine, so its bar holds the mean of three seeds, trained
at once.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from benchmarks.rl.cli import evaluate
from benchmarks.rl.data_plane import deterministic_act, train_through_data_plane
from benchmarks.rl.presets import preset_for

pytestmark = pytest.mark.timeout(1500)


def random_return(env_id: str) -> float:
    space = gym.make(env_id).action_space
    space.seed(0)
    return float(np.mean(evaluate(lambda obs: space.sample(), env_id, seed=0)))


def trained_return(algo: str, env_id: str, steps: int, config: dict[str, object], lanes: int,
                   bootstrap: str, work_dir: Path, seed: int = 0, **options: object
                   ) -> tuple[float, dict[str, object]]:
    agent, figures = train_through_data_plane(algo, env_id, steps, seed, lanes, config, bootstrap, work_dir,
                                              **options)  # type: ignore[arg-type]
    # Every transition the actors produced was trained on, in updates of the agent's own size.
    assert figures["trained_samples"] == figures["env_steps"] >= steps, figures
    return float(np.mean(evaluate(deterministic_act(agent), env_id, seed=0))), figures


def test_ppo_learns_cartpole_through_the_bus(kafka_bootstrap: str, tmp_path: Path) -> None:
    preset = preset_for("ppo", "CartPole-v1", 20_480)
    with ThreadPoolExecutor(max_workers=3) as pool:
        runs = list(pool.map(lambda seed: trained_return("ppo", "CartPole-v1", 20_480, preset.gaelp,
                                                         preset.num_envs, kafka_bootstrap,
                                                         tmp_path / f"seed-{seed}", seed=seed),
                             range(3)))
    # lockstep: each update trains on its own policy's data
    assert all(figures["policy_lag_max"] == 0 for _, figures in runs), [figures for _, figures in runs]
    scores = [score for score, _ in runs]
    baseline = random_return("CartPole-v1")
    assert baseline < 40 and float(np.mean(scores)) > 150, (baseline, scores)


def test_dqn_learns_cartpole_through_the_bus(kafka_bootstrap: str, tmp_path: Path) -> None:
    preset = preset_for("dqn", "CartPole-v1", 20_480)
    score, _ = trained_return("dqn", "CartPole-v1", 20_480, preset.gaelp, preset.num_envs,
                              kafka_bootstrap, tmp_path)
    baseline = random_return("CartPole-v1")
    assert baseline < 40 and score > 100, (baseline, score)


def test_sac_learns_pendulum_through_the_bus(kafka_bootstrap: str, tmp_path: Path) -> None:
    # train_freq 8 with gradient_steps 8: 8-step rounds (one message, one update each) that keep
    # SAC's one gradient step per env step
    config = {"learning_rate": 1e-3, "train_freq": 8, "gradient_steps": 8,
              "network": {"hidden_sizes": [64, 64], "activation": "relu", "orthogonal_init": False}}
    score, figures = trained_return("sac", "Pendulum-v1", 3_000, config, 1, kafka_bootstrap, tmp_path)
    assert figures["chunk_steps"] == 8, figures  # the round length comes from the algorithm's settings
    baseline = random_return("Pendulum-v1")
    assert baseline < -1000 and score > -800, (baseline, score)


def test_a_users_own_agent_trains_on_the_product_path(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The agent of docs/agents.md, named by its entry point in the training settings."""
    here = str(Path(__file__).parent)
    score, _ = trained_return(
        "minimal_agent:AdvantageActorCritic", "CartPole-v1", 15_360, {"horizon": 32, "learning_rate": 5e-4},
        8, kafka_bootstrap, tmp_path, extra_env={"PYTHONPATH": here},
    )
    baseline = random_return("CartPole-v1")
    assert baseline < 40 and score > 150, (baseline, score)
