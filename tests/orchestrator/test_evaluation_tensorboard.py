"""The run's per-task evaluation curves in TensorBoard event files, read back with TensorBoard's reader.

First the writer alone (tasks, steps, values, many runs, the setting that turns it off), then a real
train run: learner and orchestrator processes on the test broker, whose evaluations the event files
must hold as the run status reports them.
"""

from __future__ import annotations

import math
import struct
import time
from pathlib import Path

import pytest
from dataplane_support import BATCH_SAMPLES, learner_env, orchestrator_env, run_status, start_run, wait_until
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gaelp.config import load_settings
from gaelp.embedded.processes import ServiceProcess, start_together
from gaelp.sim import CURRICULUM_LEVELS
from orchestrator import tensorboard
from orchestrator.evaluation import AgentScore
from orchestrator.tensorboard import evaluation_logdir, record_evaluation

EVALUATION_EVERY = 1152  # dataplane_support's orchestrator preset evaluates every 1152 env steps
EVALUATIONS = 2  # the curriculum window holds the last two


def _scalars(logdir: Path, tag: str) -> list[tuple[int, float]]:
    accumulator = EventAccumulator(str(logdir))
    accumulator.Reload()
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def test_each_evaluation_is_a_point_of_its_task_curve(tmp_path: Path) -> None:
    settings = load_settings(storage={"data_dir": str(tmp_path)})
    refs = {"heuristic": 0.25}
    curve = {"single_persona": [(1000, 0.1), (2000, 0.4)], "many_personas": [(3000, 0.2), (4000, 0.6)]}
    for task, points in curve.items():
        for step, fraction in points:
            record_evaluation(settings, "run-a", task, step, AgentScore(fraction, 10 * fraction), refs)

    logdir = evaluation_logdir(tmp_path, "run-a")
    assert logdir == tmp_path / "tensorboard" / "run-a" / "evaluation"
    accumulator = EventAccumulator(str(logdir))
    accumulator.Reload()
    assert set(accumulator.Tags()["scalars"]) == {
        f"{kind}/{task}" for task in curve
        for kind in ("evaluation/normalized_reward", "evaluation/reward", "references/heuristic")}
    for task, points in curve.items():
        found = _scalars(logdir, f"evaluation/normalized_reward/{task}")
        assert [step for step, _ in found] == [step for step, _ in points]
        assert [value for _, value in found] == [_f32(value) for _, value in points]
        assert [value for _, value in _scalars(logdir, f"evaluation/reward/{task}")] == [
            _f32(10 * value) for _, value in points]
        assert {value for _, value in _scalars(logdir, f"references/heuristic/{task}")} == {_f32(0.25)}


def test_many_runs_keep_every_point_and_the_setting_turns_it_off(tmp_path: Path) -> None:
    settings = load_settings(storage={"data_dir": str(tmp_path)})
    runs = [f"run-{index}" for index in range(tensorboard.MAX_OPEN_WRITERS + 2)]
    for step in (100, 200):
        for run_id in runs:  # more runs than open writers: each run's writer is closed and reopened
            record_evaluation(settings, run_id, "t", step, AgentScore(step / 1000, 1.0), {"heuristic": 0.0})
        # TensorBoard reads a folder's event files in name order, whole seconds first: a run's next
        # file must start in a later second, as a run's evaluations (many env steps apart) always do.
        time.sleep(1.1)
    for run_id in runs:
        assert _scalars(evaluation_logdir(tmp_path, run_id), "evaluation/normalized_reward/t") == [
            (100, _f32(0.1)), (200, _f32(0.2))]

    off = load_settings(storage={"data_dir": str(tmp_path / "off")}, telemetry={"tensorboard": False})
    record_evaluation(off, "run-off", "t", 100, AgentScore(0.5, 1.0), {"heuristic": 0.0})
    assert not (tmp_path / "off").exists()


def test_a_train_run_writes_its_evaluations(kafka_bootstrap: str, tmp_path: Path, unique_name: str) -> None:
    run_id = f"tb{unique_name}"
    data_dir = tmp_path / "data"
    storage = {"GAELP_STORAGE_DATA_DIR": str(data_dir)}
    learner_settings = learner_env(kafka_bootstrap, tmp_path / "checkpoints", f"learner-{unique_name}")
    learner = ServiceProcess("learner", {**learner_settings, **storage}, tmp_path / "logs")
    orchestrator = ServiceProcess("orchestrator", {
        **orchestrator_env(kafka_bootstrap, tmp_path / "runs.db", learner.target), **storage,
    }, tmp_path / "logs")
    steps = EVALUATIONS * EVALUATION_EVERY
    assert steps % BATCH_SAMPLES == 0
    try:
        start_together(learner, orchestrator)
        start_run(orchestrator, run_id, steps)
        wait_until(lambda: run_status(orchestrator, run_id).state == "completed", 300,
                   "the run to finish its step budget", logs=orchestrator.log_tail)
        status = run_status(orchestrator, run_id)
    finally:
        orchestrator.stop()
        learner.stop()

    logdir = evaluation_logdir(data_dir, run_id)
    task = CURRICULUM_LEVELS[0].name
    curve = _scalars(logdir, f"evaluation/normalized_reward/{task}")
    assert [step for step, _ in curve] == [EVALUATION_EVERY * (i + 1) for i in range(EVALUATIONS)]
    assert all(math.isfinite(value) for _, value in curve)
    # The curriculum's window (the last two evaluations) is what the run status reports.
    window = [value for _, value in curve[-2:]]
    assert status.task == task and status.window_mean == pytest.approx(sum(window) / len(window), abs=1e-6)
    assert len(_scalars(logdir, f"evaluation/reward/{task}")) == EVALUATIONS


def _f32(value: float) -> float:
    """What TensorBoard stores: a float32 scalar."""
    return float(struct.unpack("f", struct.pack("f", value))[0])
