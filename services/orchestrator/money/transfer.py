"""Phase 4's transfer test: products the policy never trained on.

Held-out products: the sandbox catalogue's products (gaelp.sim.platform.sandbox_market
.sandbox_catalogue_market) that none of the phase-1 curriculum's simulator tasks sells. Every task
is a simulator level (orchestrator.curriculum.levels) whose market draws each campaign-day's
product from the level's own product list, so "trained on" is exactly the union of those lists;
the audiences are the policy's action choices on every task, so none of them is held out. The
simulator's model of the held-out products is the last curriculum task's market (the one phase 1
graduated on) selling those products only.

On that model, with the same budget of env steps and the same algorithm and settings (the
library's own update path, Agent.learn, the calls the learner service makes):
  fine-tuned = the run's phase-3 policy (weights and observation statistics), trained further;
  scratch    = a policy built fresh from the training settings, trained from its initial weights.
Both are then scored the same way: the deterministic policy's normalized reward (0 = random play,
1 = the planner with the true simulator parameters; gaelp.sim.market.policies) on the same seeded
campaign-days. transfer_effectiveness = fine-tuned score / scratch score (0 when the scratch score
is not above random play: the ratio then says nothing). The phase-4 campaigns on held-out products
run with the fine-tuned policy and carry both scores to the metrics service.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gaelp.config.sections.money import TransferSettings
from gaelp.config.sections.training import TrainingSettings
from gaelp.rl.algorithms.base import Agent
from gaelp.rl.factory import make_agent
from gaelp.sim import AdMarketVectorEnv
from gaelp.sim.market.config import MarketConfig, Product, curriculum_level
from gaelp.sim.market.policies import evaluate_policy, normalized_reward
from gaelp.sim.platform.sandbox_market import sandbox_catalogue_market
from orchestrator.evaluation import EVALUATION_SEED, deterministic_policy
from orchestrator.money.records import TransferRecord

# Training streams apart from the run's own (its learner's seed, its actors' offset).
TRANSFER_SEED_OFFSET = 2_000_003


def trained_products(curriculum_levels: Sequence[int]) -> set[str]:
    """Products the phase-1 curriculum's simulator tasks sell."""
    return {product.name for level in curriculum_levels for product in curriculum_level(level).products}


def held_out_products(curriculum_levels: Sequence[int]) -> list[Product]:
    trained = trained_products(curriculum_levels)
    return [product for product in sandbox_catalogue_market().products if product.name not in trained]


def transfer_market(curriculum_levels: Sequence[int], products: list[Product]) -> MarketConfig:
    """The simulator's model of the held-out products: the last curriculum task selling only them."""
    market = curriculum_level(curriculum_levels[-1])
    return market.model_copy(update={"name": f"{market.name}-held-out", "products": products})


@dataclass
class TransferResult:
    record: TransferRecord
    fine_tuned: Agent


def normalized_score(agent: Agent, market: MarketConfig, envs: int, random_reward: float,
                     upper_reward: float) -> float:
    """The deterministic policy's normalized reward on the market's seeded campaign-days."""
    result = evaluate_policy(deterministic_policy(agent), market, num_envs=envs, seed=EVALUATION_SEED)
    return normalized_reward(result.mean_reward, random_reward, upper_reward)


def fresh_agent(training: TrainingSettings, source: Agent, seed: int) -> Agent:
    return make_agent(training.agent_name(), source.observation_space, source.action_space,
                      training.algorithm_config(), device="cpu", seed=seed)


def measure_transfer(source: Agent, training: TrainingSettings, settings: TransferSettings,
                     curriculum_levels: Sequence[int], seed: int) -> TransferResult:
    """Fine-tune `source` (the run's phase-3 policy) and train a fresh policy on the held-out
    products' model, both for `settings.env_steps`; score both (CPU-bound: run it in a thread)."""
    products = held_out_products(curriculum_levels)
    if not products:
        raise ValueError("every catalogue product is sold on a phase-1 task: none is held out for transfer")
    market = transfer_market(curriculum_levels, products)
    references = {name: evaluate_policy(name, market, num_envs=settings.evaluation_envs,
                                        seed=EVALUATION_SEED).mean_reward
                  for name in ("random", "upper_bound")}
    scale = (references["random"], references["upper_bound"])
    train_seed = seed + TRANSFER_SEED_OFFSET
    fine_tuned = fresh_agent(training, source, train_seed)
    fine_tuned.load_policy_state(source.policy_state())
    zero_shot = normalized_score(fine_tuned, market, settings.evaluation_envs, *scale)
    start_steps = fine_tuned.env_steps
    fine_tuned.learn(AdMarketVectorEnv(num_envs=settings.envs, level=market, seed=train_seed),
                     settings.env_steps)
    scratch = fresh_agent(training, source, train_seed)
    scratch.learn(AdMarketVectorEnv(num_envs=settings.envs, level=market, seed=train_seed),
                  settings.env_steps)
    record = TransferRecord(
        products=[product.name for product in products], market=market.name,
        env_steps=settings.env_steps, fine_tuned_env_steps=fine_tuned.env_steps - start_steps,
        scratch_env_steps=scratch.env_steps, zero_shot_score=zero_shot,
        fine_tuned_score=normalized_score(fine_tuned, market, settings.evaluation_envs, *scale),
        scratch_score=normalized_score(scratch, market, settings.evaluation_envs, *scale),
        random_reward=references["random"], upper_bound_reward=references["upper_bound"])
    return TransferResult(record, fine_tuned)
