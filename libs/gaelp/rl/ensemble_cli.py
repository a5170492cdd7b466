"""Building an ensemble for deployment from trained agents' checkpoints.

The ensemble is a deployment-time combination, not a training algorithm: every member trains on its
own (PPO, SAC, DQN or a user agent, each through the product path), and the ensemble combines their
deterministic actions by the rule of `gaelp.rl.algorithms.ensemble` (weighted vote / weighted mean,
weights a softmax of each member's evaluation returns). Training members jointly would multiply the
learner's work and policy traffic by the member count for no gain in any member.

    python -m gaelp.rl.ensemble_cli --config my.yaml --checkpoint a.pt --checkpoint b.pt \
        --episodes 16 --out ensemble.pt

Each checkpoint is an `Agent.save_checkpoint` file (the learner's run-<n>.pt); its members are built
from the training settings of --config (spaces from `training.space_entry_point`, hyperparameters
of the checkpoint's algorithm) and scored on episodes of the space env. The output holds the members'
policies and scores; `load_ensemble(path, training)` rebuilds the `EnsembleAgent`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gaelp.config import load_settings
from gaelp.config.sections.training import TrainingSettings
from gaelp.rl.algorithms.base import Agent
from gaelp.rl.algorithms.ensemble import EnsembleAgent, EnsembleConfig
from gaelp.rl.checkpoint import atomic_save
from gaelp.rl.factory import BUILT_IN, make_agent


def _member(training: TrainingSettings, algo: str, space_env: Any) -> Agent:
    """A member of a built-in algorithm, or else of the settings' own agent class."""
    if algo in BUILT_IN:
        name, config = algo, {str(k): v for k, v in training.hyperparameters.items()}.get(algo, {})
    else:
        name, config = training.agent_entry_point, training.agent_config
    return make_agent(name, space_env.observation_space, space_env.action_space, config, device="cpu",
                      seed=training.seed)


def episode_return(agent: Agent, env: Any, seed: int) -> float:
    """One deterministic episode of a single (non-vector) env."""
    obs, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        actions, _, _ = agent.act(np.asarray(obs, np.float32).reshape(1, -1), deterministic=True)
        env_action = agent.env_actions(actions)
        single = {k: v[0] for k, v in env_action.items()} if isinstance(env_action, dict) else env_action[0]
        obs, reward, terminated, truncated, _ = env.step(single)
        total += float(reward)
        done = bool(terminated or truncated)
    return total


def build_ensemble(training: TrainingSettings, checkpoints: list[Path], episodes: int,
                   config: EnsembleConfig | None = None) -> tuple[EnsembleAgent, list[str]]:
    space_env = training.make_space_env()
    members, algos = [], []
    for path in checkpoints:
        algo = str(torch.load(path, map_location="cpu", weights_only=False)["algo"])
        member = _member(training, algo, space_env)
        member.load_checkpoint(path)
        members.append(member)
        algos.append(algo)
    ensemble = EnsembleAgent(members, config)
    for index, member in enumerate(members):
        for episode in range(episodes):
            ensemble.record_return(index, episode_return(member, space_env, seed=50_000 + episode))
    space_env.close()
    return ensemble, algos


def save_ensemble(ensemble: EnsembleAgent, algos: list[str], path: Path) -> None:
    atomic_save({
        "members": [{"algo": algo, "policy_state": member.policy_state()}
                    for algo, member in zip(algos, ensemble.members, strict=True)],
        "scores": ensemble.scores.tolist(),
        "config": ensemble.config.model_dump(),
    }, path)


def load_ensemble(path: Path, training: TrainingSettings) -> EnsembleAgent:
    payload = torch.load(path, map_location="cpu", weights_only=False)
    space_env = training.make_space_env()
    members = []
    for entry in payload["members"]:
        member = _member(training, entry["algo"], space_env)
        member.load_policy_state(entry["policy_state"])
        members.append(member)
    space_env.close()
    ensemble = EnsembleAgent(members, EnsembleConfig.model_validate(payload["config"]))
    ensemble.scores = np.asarray(payload["scores"], dtype=np.float64)
    ensemble.scored[:] = True
    return ensemble


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gaelp.rl.ensemble_cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=None, help="settings YAML (training section)")
    parser.add_argument("--checkpoint", type=Path, action="append", required=True,
                        help="a member's checkpoint (repeat for each member)")
    parser.add_argument("--episodes", type=int, default=16, help="evaluation episodes that score each member")
    parser.add_argument("--temperature", type=float, default=EnsembleConfig().temperature)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    training = load_settings(args.config).training
    ensemble, algos = build_ensemble(training, args.checkpoint, args.episodes,
                                     EnsembleConfig(temperature=args.temperature))
    save_ensemble(ensemble, algos, args.out)
    for algo, path, score, weight in zip(algos, args.checkpoint, ensemble.scores, ensemble.weights(),
                                         strict=True):
        print(f"{algo:>6} {path}: mean return {score:.2f}, weight {weight:.3f}")
    print(f"ensemble written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
