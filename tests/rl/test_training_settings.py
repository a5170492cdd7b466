"""Training settings that could not act on the product path are rejected, naming the setting."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gaelp.config.sections.training import TrainingSettings


def test_dqn_on_the_hybrid_ad_action_is_rejected_with_the_reason() -> None:
    with pytest.raises(ValidationError, match=r"training.algorithm: dqn needs a Discrete action space"):
        TrainingSettings(algorithm="dqn")


def test_dqn_on_a_discrete_task_is_accepted() -> None:
    settings = TrainingSettings(algorithm="dqn", space_entry_point="gymnasium:make",
                                space_kwargs={"id": "CartPole-v1"})
    assert settings.agent_name() == "dqn"


def test_an_unknown_algorithm_setting_is_rejected_naming_it() -> None:
    with pytest.raises(ValidationError, match=r"hyperparameters.ppo.offpolicy_updates: Extra inputs"):
        TrainingSettings(hyperparameters={"ppo": {"offpolicy_updates": 1}})


def test_an_agent_entry_point_must_name_an_agent_class() -> None:
    with pytest.raises(ValidationError, match=r"not a subclass of gaelp.rl.Agent"):
        TrainingSettings(agent_entry_point="gymnasium:make")
    settings = TrainingSettings(agent_entry_point="gaelp.rl:PPOAgent", agent_config={"n_steps": 8})
    assert settings.agent_name() == "gaelp.rl:PPOAgent" and settings.algorithm_config() == {"n_steps": 8}
