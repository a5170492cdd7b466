"""Phase-1 agents side by side: PPO from scratch, behaviour cloning only, BC then PPO.

Per curriculum level, each variant gets the same budget of environment steps (demonstration steps
count: BC + PPO spends the rest of the budget on PPO) and the policy network and PPO settings of
the development preset (configs/development.yaml). Every figure is on the one yardstick, the mean
episode reward the agent is trained on, normalized as (R - R_random) / (R_upper_bound - R_random)
(gaelp.sim.market.policies), on the orchestrator's evaluation days (seed 10007). The teacher of the
demonstrations is the heuristic policy.

    nice -n 10 .venv/bin/python -m benchmarks.phase1 --steps 200000 --out benchmarks/results/phase1.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gaelp.config import load_settings
from gaelp.rl import behaviour_cloning, make_agent
from gaelp.rl.algorithms.base import Agent
from gaelp.rl.algorithms.bc import BehaviourCloningConfig, collect_demonstrations
from gaelp.sim import CURRICULUM_LEVELS, AdMarketVectorEnv
from gaelp.sim.market.policies import PolicyEvaluation, evaluate_policy, heuristic_policy, normalized_reward

EVALUATION_SEED = 10_007  # the orchestrator's evaluation days
REFERENCES = ("random", "heuristic", "upper_bound")
VARIANTS = ("ppo", "bc", "bc_ppo")


def _agent(env: AdMarketVectorEnv, seed: int) -> Agent:
    training = load_settings(Path("configs/development.yaml")).training
    return make_agent(training.algorithm, env.single_observation_space, env.single_action_space,
                      training.algorithm_config(), device="cpu", seed=seed)


def _evaluate(agent: Agent, level: int, envs: int) -> PolicyEvaluation:
    def factory(env: AdMarketVectorEnv) -> Any:
        def act(obs: np.ndarray, info: dict[str, Any]) -> Any:
            return agent.env_actions(agent.act(obs, deterministic=True)[0])

        return act

    return evaluate_policy(factory, level, num_envs=envs, seed=EVALUATION_SEED)


def _train(variant: str, level: int, steps: int, demo_steps: int, envs: int, seed: int) -> Agent:
    env = AdMarketVectorEnv(num_envs=envs, level=level, seed=seed)
    agent = _agent(env, seed)
    rl_steps = steps
    if variant in {"bc", "bc_ppo"}:
        demo_env = AdMarketVectorEnv(num_envs=envs, level=level, seed=seed + 1)
        obs, actions = collect_demonstrations(agent, demo_env, heuristic_policy(demo_env),
                                              demo_steps // envs, seed + 1)
        behaviour_cloning(agent, obs, actions, BehaviourCloningConfig())
        rl_steps = steps - len(obs)
    if variant in {"ppo", "bc_ppo"} and rl_steps > 0:
        agent.learn(env, rl_steps)
    return agent


def level_table(level: int, steps: int, demo_steps: int, envs: int, seed: int) -> dict[str, Any]:
    refs = {name: evaluate_policy(name, level, num_envs=envs, seed=EVALUATION_SEED) for name in REFERENCES}
    low, high = refs["random"].mean_reward, refs["upper_bound"].mean_reward

    def row(result: PolicyEvaluation, **extra: Any) -> dict[str, Any]:
        return {"normalized_reward": round(normalized_reward(result.mean_reward, low, high), 4),
                "reward": round(result.mean_reward, 2), "roas": round(result.mean_roas, 3),
                "success_rate": round(result.success_rate, 3), **extra}

    table: dict[str, Any] = {"level": level, "name": CURRICULUM_LEVELS[level].name,
                             **{name: row(result) for name, result in refs.items()}}
    for variant in VARIANTS:
        started = time.perf_counter()
        agent = _train(variant, level, steps, demo_steps, envs, seed)
        table[variant] = row(_evaluate(agent, level, envs), train_s=round(time.perf_counter() - started, 1))
        heuristic = table["heuristic"]["normalized_reward"]
        print(f"level {level} {variant}: {table[variant]}  heuristic {heuristic}", flush=True)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200_000, help="env steps per variant and level")
    parser.add_argument("--demo-steps", type=int, default=36_864, help="demonstration steps of BC")
    parser.add_argument("--envs", type=int, default=64, help="campaigns per vector env")
    parser.add_argument("--levels", type=int, nargs="*", default=list(range(len(CURRICULUM_LEVELS))))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/phase1.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    result: dict[str, Any] = {
        "steps_per_variant": args.steps, "demo_steps": args.demo_steps, "envs": args.envs, "seed": args.seed,
        "yardstick": "(R - R_random) / (R_upper_bound - R_random), mean episode reward", "levels": [],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for level in args.levels:  # written after every level: a long run keeps what it finished
        result["levels"].append(level_table(level, args.steps, args.demo_steps, args.envs, args.seed))
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
