"""Coverage of the IPS and SNIPS intervals over many independent logs of fixed agents' policies.

benchmarks.ope_coverage draws one log per seed, so its coverage over 20 seeds is a binomial count
of 20 (a true 95% shows as 0.85 to 1.0). Here each agent's policy (seeds as in ope_coverage) is
held fixed and valued on R independent logs of the same market, scored as phase 2 scores them
(96 campaigns x 2 days, intervals over campaigns), against the same truth as ope_coverage
(gaelp.sim.historical.evaluator.policy_value on an independent, larger sample of campaigns). Per
agent and estimator it reports the bias over the logs, the standard deviation of the estimates
next to the standard error the interval claims (its half-width over the t quantile), and the
coverage; pooled, the coverage over all agents x R logs with its 95% Clopper-Pearson interval.
An interval that is too narrow shows as a claimed standard error below the estimates' spread; a
biased estimator as a bias that is large next to that spread. IPS and SNIPS only: their intervals
are closed-form, so a log costs a fraction of a second (DM and DR refit the reward model 100 times
per log). Campaigns, days, --sandbox and --checkpoint (the one trained policy is then the only
agent) as in ope_coverage.

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.ope_replicates --agents 5 --replicates 200 --out FILE.json
    OPENBLAS_NUM_THREADS=1 python -m benchmarks.ope_replicates --sandbox --checkpoint RUN/ckpt-N/run-0.pt
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from benchmarks.ope_coverage import TRUTH_SEED_OFFSET, clopper_pearson, logged_market, seeded_agent
from benchmarks.phase2_calibration import load_agent
from gaelp.config import load_settings
from gaelp.sim.historical.ad_logs import generate_ad_logs
from gaelp.sim.historical.evaluator import policy_value
from gaelp.sim.historical.ope import OffPolicyInput, cluster_robust_estimate
from gaelp.sim.market.env import AdMarketVectorEnv
from orchestrator.evaluation import deterministic_policy

LOG_SEED_OFFSET = 2_000_003  # the replicate logs are drawn apart from ope_coverage's logs and truth
ESTIMATORS = ("ipw", "snipw")


def replicates(agents: int, first_agent: int, replicate_logs: int, level: int, campaigns: int, days: int,
               truth_campaigns: int, checkpoint: Path | None = None,
               sandbox: bool = False) -> dict[str, object]:
    market, simulator_level = logged_market(level, sandbox)
    env = AdMarketVectorEnv(num_envs=1, level=simulator_level, seed=0)
    trained = load_agent(checkpoint) if checkpoint is not None else None
    if trained is not None:
        agents = 1
    covered = dict.fromkeys(ESTIMATORS, 0)
    t_quantile = float(stats.t.ppf(0.975, campaigns - 1))  # the intervals' quantile: one cluster per campaign
    per_agent = []
    for agent_seed in range(first_agent, first_agent + agents):
        agent = trained if trained is not None else seeded_agent(agent_seed, simulator_level)
        factory = deterministic_policy(agent)
        truth = policy_value(factory, market, truth_campaigns, days, TRUTH_SEED_OFFSET + agent_seed)
        policy = factory(env)
        estimates = {name: np.empty(replicate_logs) for name in ESTIMATORS}
        claimed_se = {name: np.empty(replicate_logs) for name in ESTIMATORS}
        covers = dict.fromkeys(ESTIMATORS, 0)
        for replicate in range(replicate_logs):
            log_seed = LOG_SEED_OFFSET + 10_000 * agent_seed + replicate
            logs = generate_ad_logs(market, campaigns, days, log_seed)
            chosen = policy(logs.obs, {})
            arms = np.asarray(chosen["creative"]) * logs.num_audiences + np.asarray(chosen["audience"])
            action_dist = np.zeros((arms.shape[0], logs.num_arms))
            action_dist[np.arange(arms.shape[0]), arms] = 1.0
            data = OffPolicyInput(reward=logs.reward, action=logs.arm, pscore=logs.pscore,
                                  action_dist=action_dist, cluster=logs.campaign)
            for name in ESTIMATORS:
                result = cluster_robust_estimate(data, name)
                estimates[name][replicate] = result.estimate
                claimed_se[name][replicate] = (result.ci_high - result.ci_low) / 2 / t_quantile
                covers[name] += result.ci_low <= truth.value <= result.ci_high
        summary = {name: {"bias": float(estimates[name].mean() - truth.value),
                          "bias_standard_error": float(estimates[name].std(ddof=1) / np.sqrt(replicate_logs)),
                          "sd_of_estimates": float(estimates[name].std(ddof=1)),
                          "mean_claimed_standard_error": float(claimed_se[name].mean()),
                          "coverage": covers[name] / replicate_logs} for name in ESTIMATORS}
        for name in ESTIMATORS:
            covered[name] += covers[name]
        per_agent.append({"agent_seed": agent_seed, "truth": truth.value,
                          "truth_standard_error": truth.standard_error} | summary)
        print(f"agent {agent_seed}: truth {truth.value:.3f} " + " ".join(
            f"{name} coverage {figures['coverage']:.3f} sd {figures['sd_of_estimates']:.3f} "
            f"claimed se {figures['mean_claimed_standard_error']:.3f}" for name, figures in summary.items()),
            flush=True)
    trials = agents * replicate_logs
    return {"agents": agents, "first_agent": first_agent, "replicates": replicate_logs, "level": level,
            "logged_market": market.name, "simulator_level": simulator_level,
            "policy": str(checkpoint) if checkpoint is not None else "freshly seeded agent per agent seed",
            "campaigns": campaigns, "days": days, "truth_campaigns": truth_campaigns,
            "interval_clusters": "campaign",
            "coverage": {name: count / trials for name, count in covered.items()},
            "coverage_interval": {name: clopper_pearson(count, trials) for name, count in covered.items()},
            "per_agent": per_agent}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=5)
    parser.add_argument("--first-agent", type=int, default=0, help="agent seeds first_agent ...")
    parser.add_argument("--replicates", type=int, default=200, help="independent logs per agent")
    historical = load_settings().orchestrator.phases.historical
    parser.add_argument("--level", type=int, default=3)
    parser.add_argument("--campaigns", type=int, default=historical.campaigns)
    parser.add_argument("--days", type=int, default=historical.days)
    parser.add_argument("--truth-campaigns", type=int, default=2048)
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a learner checkpoint: value this trained policy (the only agent)")
    parser.add_argument("--sandbox", action="store_true",
                        help="logs from the platform sandbox's market, as phase 2 draws them")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.monotonic()
    result = replicates(args.agents, args.first_agent, args.replicates, args.level, args.campaigns, args.days,
                        args.truth_campaigns, args.checkpoint, args.sandbox)
    result["wall_s"] = time.monotonic() - started
    print(json.dumps({"coverage": result["coverage"], "coverage_interval": result["coverage_interval"]}))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
