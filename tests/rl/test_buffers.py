import numpy as np
import pytest
import torch

from gaelp.rl.buffers import PrioritizedReplayBuffer, ReplayBuffer, RolloutBuffer, SumTree

CPU = torch.device("cpu")


def _fill(buffer: ReplayBuffer, rewards: list[float], dones: list[bool], truncations: list[bool]) -> None:
    steps = len(rewards)
    obs = np.arange(steps, dtype=np.float32).reshape(steps, 1, 1)  # obs encodes the time step
    buffer.add(
        obs,
        np.zeros((steps, 1, 1)),
        np.array(rewards).reshape(steps, 1),
        np.array(dones).reshape(steps, 1),
        np.array(truncations).reshape(steps, 1),
        obs + 100,
    )


def _by_step(buffer: ReplayBuffer) -> dict[int, tuple[float, float, float]]:
    sample = buffer.sample(512, torch.Generator().manual_seed(0))
    return {
        int(o): (float(r), float(d), float(n))
        for o, r, d, n in zip(
            sample.obs[:, 0], sample.rewards, sample.discounts, sample.next_obs[:, 0], strict=True
        )
    }


def test_n_step_returns_stop_at_episode_end_and_at_newest_data() -> None:
    buffer = ReplayBuffer(16, 1, 1, 1, CPU, n_step=3, gamma=0.5)
    _fill(buffer, [1, 2, 3, 4], [False, False, True, False], [False, False, False, False])
    seen = _by_step(buffer)
    assert seen[0] == pytest.approx((1 + 0.5 * 2 + 0.25 * 3, 0.0, 102))  # terminated at step 2
    assert seen[1] == pytest.approx((2 + 0.5 * 3, 0.0, 102))
    assert seen[2] == pytest.approx((3, 0.0, 102))
    assert seen[3] == pytest.approx((4, 0.5, 103))  # newest row: one step, bootstrapped


def test_truncation_is_bootstrapped_with_the_final_observation() -> None:
    buffer = ReplayBuffer(16, 1, 1, 1, CPU, n_step=2, gamma=0.5)
    _fill(buffer, [1, 2, 3], [False, True, False], [False, True, False])
    seen = _by_step(buffer)
    assert seen[0] == pytest.approx((1 + 0.5 * 2, 0.25, 101))
    assert seen[1] == pytest.approx((2, 0.5, 101))


def test_uniform_sampling_covers_lanes_and_wraps_around() -> None:
    buffer = ReplayBuffer(8, 2, 1, 1, CPU)
    for start in range(0, 12, 3):
        obs = np.arange(start, start + 3, dtype=np.float32)[:, None, None].repeat(2, 1)
        buffer.add(obs, np.zeros((3, 2, 1)), np.zeros((3, 2)), np.zeros((3, 2)), np.zeros((3, 2)), obs)
    assert len(buffer) == 8
    sample = buffer.sample(400, torch.Generator().manual_seed(1))
    assert set(sample.obs[:, 0].long().tolist()) == {8, 9, 10, 11}  # oldest rows overwritten


def test_sum_tree_search_matches_cumulative_sums() -> None:
    tree = SumTree(5, CPU)
    priorities = torch.tensor([1.0, 0.0, 3.0, 2.0, 4.0])
    tree.set(torch.arange(5), priorities)
    assert tree.total.item() == pytest.approx(10.0)
    mass = torch.tensor([0.5, 1.0, 1.5, 3.9, 4.1, 6.5, 9.9])
    expected = np.searchsorted(np.cumsum(priorities.numpy()), mass.numpy(), side="left")
    np.testing.assert_array_equal(tree.find(mass).numpy(), expected)


def test_sum_tree_stays_consistent_under_repeated_batched_updates() -> None:
    tree = SumTree(100, CPU)
    generator = torch.Generator().manual_seed(0)
    leaves = torch.zeros(tree.leaves, dtype=torch.float64)
    for _ in range(200):
        indices = torch.randint(0, 100, (64,), generator=generator)  # with repeats
        priorities = torch.rand(64, generator=generator, dtype=torch.float64)
        tree.set(indices, priorities)
        for index, priority in zip(indices.tolist(), priorities.tolist(), strict=True):
            leaves[index] = priority  # a repeated index keeps its last value
    np.testing.assert_array_equal(tree.tree[tree.leaves :].numpy(), leaves.numpy())
    internal = torch.arange(1, tree.leaves)
    children = tree.tree[2 * internal] + tree.tree[2 * internal + 1]
    np.testing.assert_allclose(tree.tree[internal].numpy(), children.numpy(), rtol=1e-9)
    assert tree.total.item() == pytest.approx(leaves.sum().item(), rel=1e-12)


def test_sum_tree_walk_is_the_same_through_numpy_and_torch() -> None:
    # CPU trees walk through numpy views; accelerator trees walk in torch: both must pick the same leaves.
    tree = SumTree(1000, CPU)
    generator = torch.Generator().manual_seed(3)
    tree.set(torch.arange(1000), torch.rand(1000, generator=generator, dtype=torch.float64))
    mass = torch.rand(4096, generator=generator, dtype=torch.float64) * tree.total
    through_torch = tree._descend(tree.tree, mass, torch.ones_like(mass, dtype=torch.long))
    assert torch.equal(tree.find(mass), through_torch)


def test_prioritized_sampling_follows_priorities_and_weights_correct_it() -> None:
    buffer = PrioritizedReplayBuffer(64, 1, 1, 1, CPU, alpha=1.0)
    _fill(buffer, [0.0] * 4, [False] * 4, [False] * 4)
    buffer.update_priorities(torch.arange(4), torch.tensor([1.0, 1.0, 1.0, 7.0]))
    sample = buffer.sample(1000, torch.Generator().manual_seed(0), beta=1.0)
    share = (sample.obs[:, 0] == 3).float().mean().item()
    assert share == pytest.approx(0.7, abs=0.02)
    heavy = sample.weights[sample.obs[:, 0] == 3]
    light = sample.weights[sample.obs[:, 0] == 0]
    assert heavy.max().item() < light.min().item()  # rarer samples carry more importance weight
    assert sample.weights.max().item() == pytest.approx(1.0)


def test_new_transitions_enter_at_max_priority() -> None:
    buffer = PrioritizedReplayBuffer(64, 1, 1, 1, CPU, alpha=1.0)
    _fill(buffer, [0.0] * 2, [False] * 2, [False] * 2)
    buffer.update_priorities(torch.arange(2), torch.tensor([5.0, 0.0]))
    flat = buffer.add(
        np.zeros((1, 1, 1)),
        np.zeros((1, 1, 1)),
        np.zeros((1, 1)),
        np.zeros((1, 1)),
        np.zeros((1, 1)),
        np.zeros((1, 1, 1)),
    )
    assert buffer.tree.get(flat).item() == pytest.approx(5.0, rel=1e-4)


def test_rollout_minibatches_partition_the_rollout() -> None:
    n = 10
    buffer = RolloutBuffer(
        torch.arange(n, dtype=torch.float32).reshape(5, 2, 1),
        torch.zeros(5, 2, 1),
        torch.zeros(5, 2),
        torch.zeros(5, 2),
        torch.zeros(5, 2),
        torch.zeros(5, 2),
    )
    batches = list(buffer.minibatches(4, torch.Generator().manual_seed(0)))
    assert [len(b.obs) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat([b.obs[:, 0] for b in batches]).long().tolist()) == list(range(n))
