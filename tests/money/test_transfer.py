"""Phase 4's transfer test on its own: which products are held out, and the two trainings it compares."""

from __future__ import annotations

from pathlib import Path

from gaelp.config import load_settings
from gaelp.config.sections.money import TransferSettings
from gaelp.rl.factory import make_agent
from gaelp.sim import AdMarketVectorEnv
from gaelp.sim.market.config import CURRICULUM_LEVELS
from gaelp.sim.platform.sandbox_market import sandbox_catalogue_market, sandbox_market_config
from orchestrator.money.transfer import (
    held_out_products,
    measure_transfer,
    normalized_score,
    trained_products,
    transfer_market,
)

LEVELS = list(range(len(CURRICULUM_LEVELS)))
# The embedded run's preset: PPO updates of 24 steps per lane, so a small budget is a few updates.
PRESET = Path(__file__).parents[2] / "configs" / "development.yaml"


def test_held_out_products_are_the_catalogue_s_that_no_curriculum_task_sells() -> None:
    trained = trained_products(LEVELS)
    held_out = [p.name for p in held_out_products(LEVELS)]
    catalogue = [p.name for p in sandbox_catalogue_market().products]
    assert held_out and set(held_out) == set(catalogue) - trained
    # Phase 2's logs hold none of them: the account listed them after its logged history.
    assert not set(held_out) & {p.name for p in sandbox_market_config().products}
    # A curriculum of the first task only trains on that task's products alone.
    assert {p.name for p in held_out_products([0])} == set(catalogue) - trained_products([0])
    market = transfer_market(LEVELS, held_out_products(LEVELS))
    assert [p.name for p in market.products] == held_out
    assert market.competitor_median_cpm == CURRICULUM_LEVELS[-1].competitor_median_cpm


def test_fine_tuned_and_scratch_train_the_same_env_steps_from_their_own_starts() -> None:
    training = load_settings(PRESET).training
    env = AdMarketVectorEnv(num_envs=8, level=LEVELS[-1], seed=3)
    source = make_agent(training.agent_name(), env.single_observation_space, env.single_action_space,
                        training.algorithm_config(), device="cpu", seed=11)
    settings = TransferSettings(env_steps=1536, envs=16, evaluation_envs=8)
    result = measure_transfer(source, training, settings, LEVELS, seed=5)
    record = result.record
    assert record.products == [p.name for p in held_out_products(LEVELS)]
    # The same budget, in the same rollouts of the algorithm.
    assert record.fine_tuned_env_steps == record.scratch_env_steps >= settings.env_steps
    # The zero-shot figure is the source policy's own score: fine-tuning started from its weights.
    market = transfer_market(LEVELS, held_out_products(LEVELS))
    scale = (record.random_reward, record.upper_bound_reward)
    assert record.zero_shot_score == normalized_score(source, market, settings.evaluation_envs, *scale)
    fine_tuned = normalized_score(result.fine_tuned, market, settings.evaluation_envs, *scale)
    assert record.fine_tuned_score == fine_tuned
    assert record.random_reward < record.upper_bound_reward

