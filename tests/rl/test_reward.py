import numpy as np
import pytest

from gaelp.rl import REWARD_COMPONENTS, RewardEngine, RewardWeights


def test_combine_is_the_sum_of_reported_contributions() -> None:
    engine = RewardEngine(RewardWeights(roas=2.0, ctr=0.5, constraint_penalty=3.0))
    components = {
        "roas": np.array([1.0, 2.0]),
        "ctr": np.array([0.2, 0.0]),
        "constraint_penalty": np.array([0, 1]),
    }
    parts = engine.contributions(components)
    np.testing.assert_allclose(parts["roas"], [2.0, 4.0])
    np.testing.assert_allclose(parts["constraint_penalty"], [0.0, -3.0])  # penalties are subtracted
    np.testing.assert_allclose(engine.combine(components), [2.1, 1.0])


def test_unknown_components_are_rejected() -> None:
    assert "roas" in REWARD_COMPONENTS
    with pytest.raises(ValueError):
        RewardEngine().combine({"clicks": 1.0})
