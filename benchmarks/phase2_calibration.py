"""Phase-2 figures of a trained policy before and after the simulator is calibrated on the logs.

For each log seed: the sandbox market's logs (as phase 2 draws them, the orchestrator's campaigns
and days), the policy's historical_match, prediction_accuracy and prediction_correlation with the
simulator level as it is and as calibrated on those logs (gaelp.sim.historical.calibration), each
compared policy's simulator prediction beside the logs' DR estimate, and the fitted parameters.
The policy is a learner checkpoint (services/learner/checkpoints.py: ckpt-<seq>/run-<n>.pt) of an
agent built as the learner builds it from the default settings.

    nice -n 5 .venv/bin/python -m benchmarks.phase2_calibration CHECKPOINT --seeds 1 2 3 4 5
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from gaelp.config import load_settings
from gaelp.rl import make_agent
from gaelp.sim.market.env import AdMarketVectorEnv
from orchestrator.phase2 import HistoricalFigures, historical_figures


def load_agent(checkpoint: Path) -> Any:
    settings = load_settings()
    env = AdMarketVectorEnv(num_envs=1, level=settings.orchestrator.phases.historical.simulator_level, seed=0)
    agent = make_agent(settings.training.agent_name(), env.single_observation_space, env.single_action_space,
                       settings.training.algorithm_config(), device="cpu", seed=settings.training.seed)
    agent.load_checkpoint(checkpoint)
    return agent


def summary(figures: HistoricalFigures, cpu_s: float) -> dict[str, Any]:
    row: dict[str, Any] = {
        "historical_match": round(figures.historical_match, 3),
        "prediction_accuracy": round(figures.prediction_accuracy, 3),
        "prediction_correlation": round(figures.prediction_correlation, 3),
        "simulator_vs_dr": {name: [round(figures.predicted[name], 2), round(per["dr"].estimate, 2)]
                            for name, per in figures.estimates.items()},
        "cpu_s": round(cpu_s, 1),
    }
    if figures.calibration is not None:
        row["fitted"] = figures.calibration.parameters
        row["loss"] = [round(figures.calibration.uncalibrated_loss, 4), round(figures.calibration.loss, 4)]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()
    settings = load_settings().orchestrator.phases.historical
    agent = load_agent(args.checkpoint)
    results = []
    for seed in args.seeds:
        for calibrated in (False, True):
            started = time.process_time()
            figures = historical_figures(agent, settings.simulator_level, settings.campaigns, settings.days,
                                         seed, settings.tolerance, calibrated=calibrated)
            row = {"seed": seed, "calibrated": calibrated} | summary(figures, time.process_time() - started)
            print(json.dumps(row), flush=True)
            results.append(row)
    for calibrated in (False, True):
        rows = [r for r in results if r["calibrated"] == calibrated]
        means = {key: round(sum(r[key] for r in rows) / len(rows), 3)
                 for key in ("historical_match", "prediction_accuracy", "prediction_correlation")}
        print(json.dumps({"calibrated": calibrated, "seeds": len(rows), "mean": means}))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
