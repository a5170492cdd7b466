"""Learner SIGKILL mid-run: after restart every produced batch is trained exactly once."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

from dataplane_support import (
    BATCH_SAMPLES,
    latest_manifest,
    learner_env,
    learner_stats,
    orchestrator_env,
    pending_batch_ids,
    produced_batches,
    read_topic,
    run_entry,
    run_status,
    start_run,
    wait_until,
)

from gaelp.bus import LEARNER_METRICS
from gaelp.embedded.processes import ServiceProcess
from gaelp.v1.events_pb2 import LearnerStats

ACTORS = 2
ROUNDS = 16  # 32 batches, 16 PPO updates, a checkpoint every 3 updates


def test_learner_sigkill_trains_every_batch_exactly_once(kafka_bootstrap: str, tmp_path: Path,
                                                         unique_name: str) -> None:
    run_id = f"crash{unique_name}"
    checkpoints = tmp_path / "checkpoints"
    l_env = learner_env(kafka_bootstrap, checkpoints, f"learner-{unique_name}", checkpoint_every_updates=3)
    learner = ServiceProcess("learner", l_env, tmp_path / "logs").start()
    orchestrator = ServiceProcess(
        "orchestrator", orchestrator_env(kafka_bootstrap, tmp_path / "runs.db", learner.target, ACTORS),
        tmp_path / "logs",
    )
    total_steps = ROUNDS * ACTORS * BATCH_SAMPLES
    try:
        orchestrator.start()
        start_run(orchestrator, run_id, total_steps)

        def checkpointed_with_run() -> bool:
            found = latest_manifest(checkpoints)
            return found is not None and run_entry(found[1], run_id) is not None

        wait_until(checkpointed_with_run, 90, "a learner checkpoint holding the run", logs=learner.log_tail)

        def published_past_checkpoint() -> bool:
            # Versions above the checkpoint's were published: after the crash they must not be reused.
            found, stats = latest_manifest(checkpoints), learner_stats(learner, run_id)
            entry = None if found is None else run_entry(found[1], run_id)
            return stats is not None and entry is not None and stats.policy_version > entry["version"]

        wait_until(published_past_checkpoint, 60, "an update after the checkpoint", every_s=0.02)
        before_kill = run_status(orchestrator, run_id)
        assert before_kill.state == "running" and before_kill.env_steps < total_steps, "killed too late"
        learner.kill()
        killed_at = latest_manifest(checkpoints)
        assert killed_at is not None

        learner.process = None
        learner.start()
        wait_until(lambda: run_status(orchestrator, run_id).state == "completed", 150,
                   "the run to finish its step budget", logs=orchestrator.log_tail)
        produced = produced_batches(kafka_bootstrap, run_id)
        produced_samples = sum(b.rewards.shape[0] * b.rewards.shape[1] for b in produced)

        def all_trained() -> bool:
            stats = learner_stats(learner, run_id)
            return stats is not None and stats.trained_samples >= produced_samples

        wait_until(all_trained, 60, "the learner to train everything produced", logs=learner.log_tail)
        assert learner.stop() == 0
        assert learner.process is not None and learner.process.returncode == 0
        orchestrator.signal(signal.SIGTERM)
    finally:
        learner.kill()
        orchestrator.stop()

    produced_ids = [b.batch_id for b in produced]
    assert len(produced_ids) == len(set(produced_ids)), "the orchestrator published a batch id twice"
    assert len(produced_ids) >= ROUNDS * ACTORS
    found = latest_manifest(checkpoints)
    assert found is not None and found[0] != killed_at[0], "no checkpoint written after the restart"
    path, manifest = found
    entry = run_entry(manifest, run_id)
    assert entry is not None
    trained = entry["trained_batch_ids"] + pending_batch_ids(path, entry)
    duplicates = [batch_id for batch_id, count in Counter(trained).items() if count > 1]
    assert duplicates == []
    assert entry["dropped_batch_ids"] == []
    assert set(trained) == set(produced_ids)
    assert entry["trained_samples"] == produced_samples
    # Versions only go up on the run's (single-partition) stats stream, across the crash too: the
    # restored learner skipped the numbers its lost updates had published.
    stats_records = read_topic(kafka_bootstrap, LEARNER_METRICS.name)
    versions = [LearnerStats.FromString(r.value).policy_version
                for r in stats_records if r.key == run_id.encode()]
    assert versions == sorted(set(versions))
    assert len(versions) >= len(produced_ids) // 2
