"""Orchestrator SIGKILL mid-run: the restarted process resumes the stored run where it was."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from dataplane_support import (
    BATCH_SAMPLES,
    learner_env,
    orchestrator_env,
    produced_batches,
    run_status,
    start_run,
    stored_run_document,
    wait_until,
)

from gaelp.embedded.processes import ServiceProcess, start_together
from gaelp.sim import CURRICULUM_LEVELS
from gaelp.v1 import common_pb2

ACTORS = 2
ROUNDS = 12


def test_orchestrator_sigkill_resumes_run_from_the_store(kafka_bootstrap: str, tmp_path: Path,
                                                         unique_name: str) -> None:
    run_id = f"orch{unique_name}"
    database = tmp_path / "runs.db"
    learner = ServiceProcess(
        "learner", learner_env(kafka_bootstrap, tmp_path / "checkpoints", f"learner-{unique_name}"),
        tmp_path / "logs",
    )
    orchestrator = ServiceProcess(
        "orchestrator", orchestrator_env(kafka_bootstrap, database, learner.target, ACTORS), tmp_path / "logs"
    )
    total_steps = ROUNDS * ACTORS * BATCH_SAMPLES
    try:
        start_together(learner, orchestrator)
        start_run(orchestrator, run_id, total_steps)
        wait_until(lambda: run_status(orchestrator, run_id).batches_published >= 3 * ACTORS, 90,
                   "a few rounds of batches", every_s=0.05, logs=orchestrator.log_tail)
        orchestrator.kill()
        stored = stored_run_document(database, run_id)
        assert stored["state"] == "running"
        assert 0 < stored["env_steps"] < total_steps, "killed too late"
        stored_task = CURRICULUM_LEVELS[stored["curriculum"]["task_index"]].name

        orchestrator.process = None
        orchestrator.start()
        resumed = run_status(orchestrator, run_id)
        assert resumed.state == "running"
        assert resumed.phase == stored["phase"] == common_pb2.PHASE_SIMULATION
        assert resumed.task == stored_task
        assert resumed.episodes >= stored["episodes"]
        assert resumed.env_steps >= stored["env_steps"]
        assert resumed.batches_published >= stored["batches_published"]
        assert resumed.task_env_steps >= stored["curriculum"]["steps_on_task"]
        wait_until(lambda: run_status(orchestrator, run_id).state == "completed", 120,
                   "the resumed run to finish its step budget", logs=orchestrator.log_tail)
        final = run_status(orchestrator, run_id)
    finally:
        orchestrator.stop()
        learner.stop()

    assert final.env_steps >= total_steps
    produced = produced_batches(kafka_bootstrap, run_id)
    ids = [b.batch_id for b in produced]
    assert [batch_id for batch_id, count in Counter(ids).items() if count > 1] == []
    for actor in range(ACTORS):
        sequences = sorted(int(b.batch_id.rsplit(":", 1)[1]) for b in produced
                           if b.batch_id.startswith(f"{run_id}:{actor}:"))
        # The restarted process went on from the stored sequence: numbers above it, none reused.
        assert sequences, (actor, sorted(ids), stored["actor_batches"], final)
        assert sequences[-1] >= stored["actor_batches"][actor]
        assert max(sequences) + 1 >= final.batches_published // ACTORS
    assert len(produced) >= final.batches_published
