"""Simulator throughput: environment steps per second of AdMarketVectorEnv at N = 1, 64, 4096.

One "step" is one campaign-hour, so a vector step of N campaigns counts N steps. Actions are
pre-sampled so the figure measures the environment alone. With --processes 2 the same batch runs in
two processes at once (one per core) and the figure is their sum.

    .venv/bin/python -m benchmarks.sim_throughput [--seconds 3] [--level 3] [--processes 1]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

import numpy as np

from gaelp.sim import AdMarketVectorEnv

SIZES = (1, 64, 4096)


def steps_per_second(num_envs: int, level: int, seconds: float, seed: int = 0) -> float:
    env = AdMarketVectorEnv(num_envs=num_envs, level=level, seed=seed)
    env.reset(seed=seed)
    actions = [env.action_space.sample() for _ in range(16)]
    for action in actions[:4]:  # warm-up
        env.step(action)
    steps = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for action in actions:
            env.step(action)
        steps += num_envs * len(actions)
    return steps / elapsed


def _worker(args: tuple[int, int, float, int]) -> float:
    num_envs, level, seconds, seed = args
    return steps_per_second(num_envs, level, seconds, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--level", type=int, default=3, help="curriculum level (3 = hardest)")
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    print(f"level {args.level}, {args.processes} process(es), {args.seconds:.0f}s per size")
    for num_envs in SIZES:
        if args.processes == 1:
            rate = steps_per_second(num_envs, args.level, args.seconds)
        else:
            jobs = [(num_envs, args.level, args.seconds, seed) for seed in range(args.processes)]
            with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
                rate = float(np.sum(pool.map(_worker, jobs)))
        print(f"N={num_envs:5d}  {rate:>12,.0f} env steps/s")


if __name__ == "__main__":
    main()
