"""In-process checks of the data plane's parts: batch decoding, the run trainer, the curriculum
scheduler, the learner's checkpoint store and its policy files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dataplane_support import (
    BATCH_SAMPLES,
    HYPERPARAMETERS,
    ROLLOUT_SAMPLES,
    root_buffer,
    sample_chunk,
    training_settings,
)

from gaelp.bus import BusProducer
from gaelp.bus.tensors import to_tensor
from gaelp.config import load_settings
from gaelp.config.sections.orchestrator import CurriculumSettings
from gaelp.rl.spaces import ActionLayout, flat_observation_dim
from gaelp.sim import CURRICULUM_LEVELS, make_ad_env
from gaelp.v1 import events_pb2
from learner.batches import DecodedBatch, InvalidBatch, decode_batch
from learner.checkpoints import CheckpointStore
from learner.service import LearnerService
from learner.trainer import RunTrainer, build_run_trainer
from orchestrator.curriculum import CurriculumScheduler
from orchestrator.messages import transition_batch
from orchestrator.policy import PolicyHolder

FLOAT_COLUMNS = ("observations", "actions", "rewards", "dones", "truncations", "log_probs", "values",
                 "next_observations", "next_values")


@pytest.fixture(scope="module")
def spaces() -> tuple[int, ActionLayout]:
    env = make_ad_env()
    try:
        return flat_observation_dim(env.observation_space), ActionLayout.from_space(env.action_space)
    finally:
        env.close()


@pytest.fixture(scope="module")
def message() -> events_pb2.TransitionBatch:
    chunk, _ = sample_chunk()
    return transition_batch(chunk, "unit-run", "unit-run-actor-0", "unit-run:0:0", 0, "level-0")


def _decode(message: events_pb2.TransitionBatch, spaces: tuple[int, ActionLayout]) -> DecodedBatch:
    raw = message.SerializeToString()
    return decode_batch(events_pb2.TransitionBatch.FromString(raw), *spaces, raw)


def _with(message: events_pb2.TransitionBatch, **changes: object) -> events_pb2.TransitionBatch:
    changed = events_pb2.TransitionBatch()
    changed.CopyFrom(message)
    for name, value in changes.items():
        if isinstance(value, np.ndarray):
            getattr(changed, name).CopyFrom(to_tensor(value))
        elif value is None:
            changed.ClearField(name)
        else:
            setattr(changed, name, value)
    return changed


def _column(message: events_pb2.TransitionBatch, name: str) -> np.ndarray:
    tensor = getattr(message, name)
    return np.frombuffer(tensor.data, dtype=tensor.dtype).reshape(tuple(tensor.shape)).copy()


# ---- decode_batch ------------------------------------------------------------------------------
def test_decode_accepts_a_batch_as_read_only_views_of_the_message_bytes(
    message: events_pb2.TransitionBatch, spaces: tuple[int, ActionLayout]
) -> None:
    batch = _decode(message, spaces)
    assert (batch.steps, batch.lanes, batch.samples) == (24, 4, BATCH_SAMPLES)
    assert batch.obs.shape == (24, 4, spaces[0]) and batch.next_obs.shape == (24, 4, spaces[0])
    assert batch.actions.shape == (24, 4, spaces[1].flat_dim)
    for array in (batch.obs, batch.actions, batch.rewards, batch.dones, batch.log_probs, batch.values,
                  batch.next_obs, batch.next_values):
        assert array is not None
        assert not array.flags.writeable
        assert isinstance(root_buffer(array), bytes), "decoded with a copy instead of a view"
    np.testing.assert_array_equal(batch.rewards, _column(message, "rewards"))
    assert batch.raw == message.SerializeToString()


@pytest.mark.parametrize("column", FLOAT_COLUMNS)
def test_decode_rejects_a_column_of_the_wrong_shape(
    column: str, message: events_pb2.TransitionBatch, spaces: tuple[int, ActionLayout]
) -> None:
    values = _column(message, column)
    with pytest.raises(InvalidBatch, match=column if column != "rewards" else "observations"):
        _decode(_with(message, **{column: values[..., :-1] if values.ndim > 2 else values[:-1]}), spaces)


@pytest.mark.parametrize("column", FLOAT_COLUMNS)
def test_decode_rejects_non_finite_values(
    column: str, message: events_pb2.TransitionBatch, spaces: tuple[int, ActionLayout]
) -> None:
    values = _column(message, column)
    values.flat[values.size // 2] = np.nan if column != "next_values" else np.inf
    with pytest.raises(InvalidBatch, match=f"{column} contains NaN or infinite"):
        _decode(_with(message, **{column: values}), spaces)


@pytest.mark.parametrize("column", [c for c in FLOAT_COLUMNS if c != "next_values"])
def test_decode_rejects_a_missing_column(
    column: str, message: events_pb2.TransitionBatch, spaces: tuple[int, ActionLayout]
) -> None:
    with pytest.raises(InvalidBatch, match=f"{column} is missing"):
        _decode(_with(message, **{column: None}), spaces)


def test_decode_rejects_bytes_that_do_not_fit_the_shape_and_empty_ids(
    message: events_pb2.TransitionBatch, spaces: tuple[int, ActionLayout]
) -> None:
    truncated = _with(message)
    truncated.values.data = truncated.values.data[:-4]
    with pytest.raises(InvalidBatch, match="values"):
        _decode(truncated, spaces)
    for name in ("run_id", "actor_id", "batch_id"):
        with pytest.raises(InvalidBatch, match=f"{name} is empty"):
            _decode(_with(message, **{name: ""}), spaces)
    with pytest.raises(InvalidBatch, match="rewards must be"):
        _decode(_with(message, rewards=np.zeros((0, 4), np.float32)), spaces)


# ---- RunTrainer --------------------------------------------------------------------------------
def _trainer(max_policy_lag: int) -> RunTrainer:
    settings = training_settings()
    learner = settings.learner.model_copy(update={"max_policy_lag": max_policy_lag})
    env = make_ad_env()
    try:
        return build_run_trainer("unit-run", settings.training, learner, env.observation_space,
                                 env.action_space)
    finally:
        env.close()


def _batch(message: events_pb2.TransitionBatch, spaces: tuple[int, ActionLayout], batch_id: str,
           version: int) -> DecodedBatch:
    return _decode(_with(message, batch_id=batch_id, policy_version=version), spaces)


def test_trainer_updates_after_a_rollout_and_ignores_a_duplicate_batch_id(
    message: events_pb2.TransitionBatch, spaces: tuple[int, ActionLayout]
) -> None:
    trainer = _trainer(max_policy_lag=2)
    assert trainer.add(_batch(message, spaces, "b0", 0)) is None
    assert trainer.add(_batch(message, spaces, "b0", 0)) == "duplicate"
    assert not trainer.ready(), "one batch is half a rollout; the duplicate must not count"
    assert trainer.add(_batch(message, spaces, "b1", 0)) is None
    assert trainer.ready()
    result = trainer.update()
    assert (result.version, result.samples, result.lag_max) == (1, 2 * BATCH_SAMPLES, 0)
    assert result.weight_change > 0
    assert trainer.trained_batch_ids == ["b0", "b1"] and trainer.pending == []
    assert trainer.add(_batch(message, spaces, "b1", 0)) == "duplicate", "redelivery after training"
    assert trainer.pending == [] and trainer.trained_samples == 2 * BATCH_SAMPLES


def test_trainer_drops_a_stale_on_policy_batch_and_refuses_future_versions(
    message: events_pb2.TransitionBatch, spaces: tuple[int, ActionLayout]
) -> None:
    trainer = _trainer(max_policy_lag=1)
    trainer.version = 3
    assert trainer.add(_batch(message, spaces, "old", 1)) == "stale"
    assert trainer.add(_batch(message, spaces, "old", 1)) == "duplicate"
    assert trainer.add(_batch(message, spaces, "ahead", 4)) == "from_the_future"
    assert trainer.add(_batch(message, spaces, "recent", 2)) is None
    assert trainer.dropped_batch_ids == ["old"]
    assert [b.batch_id for b in trainer.pending] == ["recent"]


# ---- CurriculumScheduler -----------------------------------------------------------------------
def _scheduler(**overrides: object) -> CurriculumScheduler:
    settings = CurriculumSettings(**{"levels": [0, 1, 2], "window": 2, "min_env_steps": 100,
                                     "advance_threshold": 0.8, "regress_threshold": 0.3,
                                     "max_env_steps_per_task": 1000, **overrides})
    return CurriculumScheduler(settings, [level.name for level in CURRICULUM_LEVELS])


def test_curriculum_advances_on_performance_after_min_steps_and_a_full_window() -> None:
    scheduler = _scheduler()
    names = [level.name for level in CURRICULUM_LEVELS]
    assert scheduler.task.name == names[0] and scheduler.task.prerequisite is None
    scheduler.record_steps(50, 2)
    assert scheduler.record_evaluation(0.95) == "stay"
    assert scheduler.record_evaluation(0.95) == "stay", "below min_env_steps"
    scheduler.record_steps(50, 2)
    assert scheduler.record_evaluation(0.95) == "advance"
    assert scheduler.task.name == names[1] and scheduler.task.prerequisite == names[0]
    assert scheduler.state.steps_on_task == 0 and scheduler.state.window == []
    assert scheduler.state.history[-1]["decision"] == "advance"
    assert scheduler.state.history[-1]["steps"] == 100


def test_curriculum_advances_on_performance_only_above_the_heuristic() -> None:
    scheduler = _scheduler()
    scheduler.record_steps(100, 4)
    scheduler.record_evaluation(0.85, heuristic=0.9)
    assert scheduler.record_evaluation(0.85, heuristic=0.9) == "stay", "at the bar but below the heuristic"
    assert scheduler.record_evaluation(1.0, heuristic=0.9) == "advance", "window mean 0.925"
    plain = _scheduler(advance_over_heuristic=False)
    plain.record_steps(100, 4)
    plain.record_evaluation(0.85, heuristic=0.9)
    assert plain.record_evaluation(0.85, heuristic=0.9) == "advance"


def test_curriculum_advances_on_budget_and_regresses_on_collapse() -> None:
    scheduler = _scheduler()
    scheduler.record_steps(1000, 40)
    assert scheduler.record_evaluation(0.5) == "advance_on_budget"
    assert scheduler.state.task_index == 1
    scheduler.record_steps(200, 8)
    assert scheduler.record_evaluation(0.1) == "stay", "one evaluation is not a full window"
    assert scheduler.record_evaluation(0.1) == "regress"
    assert scheduler.state.task_index == 0
    assert [h["decision"] for h in scheduler.state.history] == ["advance_on_budget", "regress"]
    scheduler.record_steps(10, 1)
    scheduler.record_evaluation(0.0)
    assert scheduler.record_evaluation(0.0) == "stay", "the first task has nothing to regress to"


def test_curriculum_completes_at_the_last_task_and_resumes_from_its_document() -> None:
    scheduler = _scheduler(levels=[0, 1])
    scheduler.record_steps(1000, 40)
    assert scheduler.record_evaluation(0.2) == "advance_on_budget"
    scheduler.record_steps(150, 6)
    scheduler.record_evaluation(0.85)
    restored = CurriculumScheduler(scheduler.settings, [level.name for level in CURRICULUM_LEVELS],
                                   scheduler.state.model_copy(deep=True))
    assert restored.window_mean == pytest.approx(0.85)
    assert restored.record_evaluation(0.9) == "complete"
    assert restored.state.task_index == 1
    budget = _scheduler(levels=[0])
    budget.record_steps(1000, 40)
    # The last task completes on performance only; its spent budget stops the run, recorded as such.
    assert budget.record_evaluation(0.0) == "stopped_on_task_budget"
    assert [h["decision"] for h in budget.state.history] == ["stopped_on_task_budget"]


# ---- CheckpointStore ---------------------------------------------------------------------------
def _writer(text: str):  # type: ignore[no-untyped-def]
    def save(path: Path) -> None:
        path.write_text(text)

    return save


def test_checkpoint_store_writes_manifest_and_state_and_prunes(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, kept=2)
    assert store.latest() is None
    for sequence in range(1, 5):
        entry = {"run_id": "r", "version": sequence, "trained_batch_ids": [f"b{sequence}"],
                 "dropped_batch_ids": [], "trained_samples": 96 * sequence}
        store.write({"gaelp.transitions.v1:0": 10 * sequence}, [(entry, _writer(f"state {sequence}"))])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-00000003", "ckpt-00000004"]
    latest = store.latest()
    assert latest is not None and latest.sequence == 4
    assert latest.offsets == {"gaelp.transitions.v1:0": 40}
    (run,) = latest.runs
    assert (run.run_id, run.version, run.trained_batch_ids, run.trained_samples) == ("r", 4, ["b4"], 384)
    assert run.state_file.read_text() == "state 4"


def test_checkpoint_store_leaves_the_previous_checkpoint_when_a_write_fails(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, kept=3)
    entry = {"run_id": "r", "version": 1, "trained_batch_ids": [], "dropped_batch_ids": [],
             "trained_samples": 0}
    store.write({"t:0": 5}, [(entry, _writer("good"))])

    def crash(path: Path) -> None:
        path.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        store.write({"t:0": 9}, [(entry, _writer("fine")), (entry, crash)])
    latest = store.latest()
    assert latest is not None and latest.sequence == 1 and latest.offsets == {"t:0": 5}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("ckpt-")] == ["ckpt-00000001"]
    store.write({"t:0": 9}, [(entry, _writer("retry"))])
    latest = store.latest()
    assert latest is not None and latest.sequence == 2 and latest.runs[0].state_file.read_text() == "retry"


async def test_learner_keeps_its_newest_policy_files_and_an_actor_skips_a_pruned_one(
    tmp_path: Path, message: events_pb2.TransitionBatch, spaces: tuple[int, ActionLayout]
) -> None:
    settings = load_settings(
        training={"hyperparameters": HYPERPARAMETERS},
        learner={"rollout_samples": ROLLOUT_SAMPLES, "device": "cpu", "policy_inline_max_bytes": 1024,
                 "policy_files_kept": 2},
        storage={"checkpoint_dir": str(tmp_path)},
        # No broker: the producer is never started, the policy messages are only made here.
        kafka={"bootstrap": "127.0.0.1:9"},
    )
    learner = LearnerService(settings, BusProducer(settings.kafka))
    trainer = learner.run("files-run")
    first = learner.policies["files-run"]
    assert first.checkpoint_uri, "weights over policy_inline_max_bytes travel as a file"
    newest = first
    for update in range(3):
        for lane in range(2):
            assert trainer.add(_batch(message, spaces, f"b{update}-{lane}", trainer.version)) is None
        _, newest = learner._train(trainer)
    files = sorted(p.name for p in (tmp_path / "policies" / "files-run").iterdir())
    assert files == ["v00000002.pt", "v00000003.pt"], "one file per version, the two newest kept"
    holder = PolicyHolder(settings.training, learner.observation_space, learner.action_space)
    await holder.offer(first)
    assert not holder.apply_offer() and holder.version == -1, "version 0's file was pruned: skipped"
    await holder.offer(newest)
    assert holder.apply_offer() and holder.version == 3
