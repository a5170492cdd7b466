"""Train, evaluate (deterministic policy, 10 episodes per seed) and write a JSON report.

Keys: algo, env, steps, seeds, mean_return (mean over seeds of each seed's evaluation mean),
std_return (std over all evaluation episodes), wall_s (training wall time, all seeds), sps (env steps
per second of training), per_seed, config, torch_threads; with --vs-sb3 the same keys under "sb3" for
Stable-Baselines3 trained with the same budget and hyperparameters in the same process, and
"speed_ratio" = sps / sb3.sps. With --data-plane the same algorithm, environment, budget and seeds
also train through the data plane (broker, environment registry, learner and orchestrator
processes, see benchmarks/rl/data_plane.py), with the same keys under "data_plane" and
"data_plane_speed_ratio" = data_plane.sps / sps.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from benchmarks.rl.data_plane import deterministic_act, train_through_data_plane
from benchmarks.rl.presets import Preset, preset_for
from gaelp.bus.local_broker import LocalBroker
from gaelp.rl import configure_torch_threads, make_agent
from gaelp.rl.algorithms.base import Agent
from gaelp.rl.rollout import make_vector_env

EVAL_EPISODES = 10


def evaluate(act: Any, env_id: str, seed: int, episodes: int = EVAL_EPISODES) -> list[float]:
    """Deterministic returns of `act(obs[1, D]) -> env action` over `episodes` fresh episodes."""
    env = gym.make(env_id)
    returns: list[float] = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=10_000 * (seed + 1) + episode)
        done, total = False, 0.0
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def run_gaelp(algo: str, env_id: str, steps: int, seed: int, preset: Preset, device: str) -> dict[str, Any]:
    env = make_vector_env(env_id, preset.num_envs)
    agent: Agent = make_agent(
        algo, env.single_observation_space, env.single_action_space, preset.gaelp, device=device, seed=seed
    )
    start = time.perf_counter()
    next_report = [steps // 20]

    def progress(agent: Agent, stats: dict[str, float]) -> None:
        if agent.env_steps >= next_report[0] and "recent_return" in stats:
            next_report[0] = agent.env_steps + steps // 20
            elapsed = time.perf_counter() - start
            print(
                f"  seed {seed} step {agent.env_steps} training return (last 10 episodes) "
                f"{stats['recent_return']:.1f} elapsed {elapsed:.0f}s",
                flush=True,
            )

    agent.learn(env, steps, callback=progress)
    wall = time.perf_counter() - start
    env.close()

    returns = evaluate(deterministic_act(agent), env_id, seed)
    return {
        "seed": seed,
        "returns": returns,
        "mean_return": float(np.mean(returns)),
        "wall_s": wall,
        "sps": agent.env_steps / wall,
        "env_steps": agent.env_steps,
    }


def run_data_plane(algo: str, env_id: str, steps: int, seed: int, preset: Preset, bootstrap: str,
                   work_dir: Path, chunk_steps: int | None) -> dict[str, Any]:
    agent, figures = train_through_data_plane(
        algo, env_id, steps, seed, preset.num_envs, preset.gaelp, bootstrap, work_dir / f"seed{seed}",
        chunk_steps,
    )
    returns = evaluate(deterministic_act(agent), env_id, seed)
    return {"seed": seed, "returns": returns, "mean_return": float(np.mean(returns)), **figures}


def _sb3_kwargs(raw: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        if isinstance(value, str) and value.startswith("linear:"):
            initial = float(value.split(":", 1)[1])
            kwargs[name] = lambda remaining, initial=initial: remaining * initial
        elif name == "policy_kwargs":
            policy_kwargs = dict(value)
            if policy_kwargs.get("activation_fn") == "relu":
                policy_kwargs["activation_fn"] = torch.nn.ReLU
            if isinstance(policy_kwargs.get("net_arch"), dict):
                policy_kwargs["net_arch"] = dict(policy_kwargs["net_arch"])
            kwargs[name] = policy_kwargs
        else:
            kwargs[name] = value
    return kwargs


def run_sb3(algo: str, env_id: str, steps: int, seed: int, preset: Preset) -> dict[str, Any]:
    # Imported here: stable-baselines3 is the optional `bench` extra, never a runtime dependency.
    import stable_baselines3 as sb3
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    env = make_vec_env(env_id, n_envs=preset.num_envs, seed=seed)
    if preset.normalize:
        env = VecNormalize(env, gamma=preset.sb3.get("gamma", 0.99))
    model_type = {"ppo": sb3.PPO, "sac": sb3.SAC, "dqn": sb3.DQN}[algo]
    model = model_type("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **_sb3_kwargs(preset.sb3))
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    wall = time.perf_counter() - start
    if preset.normalize:
        env.training = False

    def act(obs: np.ndarray) -> Any:
        batch = np.asarray(obs, dtype=np.float32)[None]
        if preset.normalize:
            batch = env.normalize_obs(batch)
        action, _ = model.predict(batch, deterministic=True)
        return action[0]

    returns = evaluate(act, env_id, seed)
    return {
        "seed": seed,
        "returns": returns,
        "mean_return": float(np.mean(returns)),
        "wall_s": wall,
        "sps": model.num_timesteps / wall,
        "env_steps": int(model.num_timesteps),
    }


def summarize(algo: str, env_id: str, steps: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    episodes = [r for run in runs for r in run["returns"]]
    wall = sum(run["wall_s"] for run in runs)
    return {
        "algo": algo,
        "env": env_id,
        "steps": steps,
        "seeds": len(runs),
        "mean_return": float(np.mean([run["mean_return"] for run in runs])),
        "std_return": float(np.std(episodes)),
        "wall_s": wall,
        "sps": sum(run["env_steps"] for run in runs) / wall,
        "per_seed": runs,
    }


def _write(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rl", description=__doc__)
    parser.add_argument("--algo", choices=["ppo", "sac", "dqn"], required=True)
    parser.add_argument("--env", required=True, help="gymnasium env id, e.g. CartPole-v1")
    parser.add_argument("--steps", type=int, required=True, help="env steps of training per seed")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--first-seed", type=int, default=0, help="seeds run are first-seed .. first-seed+seeds-1"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--vs-sb3", action="store_true", help="also train Stable-Baselines3 (bench extra)")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--data-plane", action="store_true", help="also train through broker, registry, learner, orchestrator"
    )
    parser.add_argument(
        "--data-plane-only", action="store_true", help="with --data-plane: skip the in-process runs"
    )
    parser.add_argument(
        "--chunk-steps", type=int, default=None, help="data plane: steps per chunk (default: one update's)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=JSON",
        help="override a gaelp config field of the preset, e.g. --set dueling=false",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: see configure_torch_threads)"
    )
    args = parser.parse_args(argv)

    threads = configure_torch_threads(args.threads)
    preset = preset_for(args.algo, args.env, args.steps)
    if args.set:
        overrides = {field: json.loads(value) for field, value in (item.split("=", 1) for item in args.set)}
        preset = dataclasses.replace(preset, gaelp={**preset.gaelp, **overrides})
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    runs: list[dict[str, Any]] = []
    report: dict[str, Any] = {}
    if args.data_plane_only and args.out.exists():
        report = json.loads(args.out.read_text())  # the in-process figures of an earlier run
    for seed in [] if args.data_plane_only else seeds:
        runs.append(run_gaelp(args.algo, args.env, args.steps, seed, preset, args.device))
        print(
            f"gaelp seed {seed}: return {runs[-1]['mean_return']:.1f} sps {runs[-1]['sps']:.0f}", flush=True
        )
        report = summarize(args.algo, args.env, args.steps, runs)
        report.update({"config": preset.gaelp, "num_envs": preset.num_envs, "torch_threads": threads})
        report["complete"] = len(runs) == args.seeds and not (args.vs_sb3 or args.data_plane)
        _write(args.out, report)  # after every seed, so long runs leave partial figures behind
    if args.data_plane:
        plane_runs: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory(prefix="gaelp-rl-data-plane-") as tmp:
            for seed in seeds:
                # A broker per seed: on a shared one, each seed's learner (a consumer group of its
                # own, reading from the start) first trained every earlier seed's transitions again
                # while its actors waited for policies and went on with stale ones.
                with LocalBroker() as broker:
                    plane_runs.append(run_data_plane(args.algo, args.env, args.steps, seed, preset,
                                                     broker.bootstrap, Path(tmp), args.chunk_steps))
                print(f"data plane seed {seed}: return {plane_runs[-1]['mean_return']:.1f} "
                      f"sps {plane_runs[-1]['sps']:.0f}", flush=True)
                report["data_plane"] = summarize(args.algo, args.env, args.steps, plane_runs)
                if "sps" in report:
                    report["data_plane_speed_ratio"] = report["data_plane"]["sps"] / report["sps"]
                report["complete"] = len(plane_runs) == args.seeds and not args.vs_sb3
                _write(args.out, report)
    if args.vs_sb3:
        sb3_runs = []
        for seed in seeds:
            sb3_runs.append(run_sb3(args.algo, args.env, args.steps, seed, preset))
            print(
                f"sb3 seed {seed}: return {sb3_runs[-1]['mean_return']:.1f} sps {sb3_runs[-1]['sps']:.0f}",
                flush=True,
            )
        report["sb3"] = summarize(args.algo, args.env, args.steps, sb3_runs)
        report["speed_ratio"] = report["sps"] / report["sb3"]["sps"]
        report["complete"] = True
        _write(args.out, report)
    headline: dict[str, Any] = {
        k: report[k] for k in ("algo", "env", "steps", "seeds", "mean_return", "std_return", "wall_s", "sps")
        if k in report
    }
    if args.data_plane:
        headline["data_plane"] = {k: report["data_plane"][k] for k in ("mean_return", "std_return", "sps")}
    print(
        json.dumps(
            headline
            | (
                {
                    "sb3_sps": report["sb3"]["sps"],
                    "sb3_mean_return": report["sb3"]["mean_return"],
                    "speed_ratio": report["speed_ratio"],
                }
                if args.vs_sb3
                else {}
            )
        )
    )
    return 0
