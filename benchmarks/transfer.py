"""Phase 4's transfer test on a run's policy from its learner checkpoint, outside a run.

    python -m benchmarks.transfer --checkpoint var/gaelp/runs/RUN/checkpoints/learner [--env-steps N ...]
        [--config configs/development.yaml]  (the preset the run trained with)

Loads the newest checkpoint's policy of the run (the one its phase 3 ended with: phases 2 and 3
train nothing), then measures what phase 4 measures before its campaigns
(orchestrator.money.transfer.measure_transfer) for each budget of env steps given: the policy
fine-tuned on the held-out products' simulator model against one trained from scratch on the same
env steps, both as normalized reward on the same seeded campaign-days, and their ratio (phase 4's
transfer_effectiveness). Prints the machine and the seconds each measurement took.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from gaelp.config import load_settings
from gaelp.rl.factory import make_agent
from gaelp.sim import AdMarketVectorEnv
from orchestrator.money.transfer import measure_transfer


def newest_state_file(directory: Path) -> Path:
    newest = max(directory.glob("ckpt-*"), key=lambda path: int(path.name.split("-")[1]))
    manifest = json.loads((newest / "manifest.json").read_text())
    return newest / manifest["runs"][0]["state_file"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="a run's learner checkpoint directory")
    parser.add_argument("--config", type=Path, default=Path("configs/development.yaml"),
                        help="the preset the run trained with")
    parser.add_argument("--env-steps", type=int, nargs="+", default=None,
                        help="budgets to measure (default: orchestrator.money.transfer.env_steps)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    settings = load_settings(args.config)
    transfer = settings.orchestrator.money.transfer
    levels = settings.orchestrator.curriculum.levels
    probe = AdMarketVectorEnv(num_envs=1, level=levels[-1], seed=args.seed)
    source = make_agent(settings.training.agent_name(), probe.single_observation_space,
                        probe.single_action_space, settings.training.algorithm_config(), device="cpu",
                        seed=args.seed)
    state_file = newest_state_file(args.checkpoint)
    source.load_checkpoint(state_file)
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs; policy {state_file}; "
          f"algorithm {settings.training.agent_name()}")
    for env_steps in args.env_steps or [transfer.env_steps]:
        started = time.monotonic()
        budget = transfer.model_copy(update={"env_steps": env_steps})
        record = measure_transfer(source, settings.training, budget, levels, args.seed).record
        ratio = record.fine_tuned_score / record.scratch_score if record.scratch_score > 0 else 0.0
        print(f"{env_steps} env steps each on {record.market} ({', '.join(record.products)}): phase-3 policy "
              f"{record.zero_shot_score:.3f}, fine-tuned {record.fine_tuned_score:.3f}, scratch "
              f"{record.scratch_score:.3f}, transfer_effectiveness {ratio:.3f}; "
              f"{time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
