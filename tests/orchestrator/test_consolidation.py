"""After its curriculum a run keeps training on the last task while phase 1 is decided, within the
consolidation budget, then waits; a graduation then moves it on to phase 2's work.

Learner and orchestrator are real processes over the broker; the assessment is synthetic (produced
onto gaelp.assessments.v1 in place of the metrics service) so the decision comes when the test says.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from dataplane_support import learner_env, orchestrator_env, read_topic, run_status, start_run, wait_until
from phase_inputs import assessment, produce

from gaelp.bus import ASSESSMENTS, EPISODES
from gaelp.embedded.processes import ServiceProcess, start_together
from gaelp.v1 import common_pb2, events_pb2

SIM, HIST = common_pb2.PHASE_SIMULATION, common_pb2.PHASE_HISTORICAL
ROUND = 4 * 24  # one actor of 4 campaigns, 24 steps a chunk
CONSOLIDATION = 6 * ROUND


def test_the_last_task_trains_on_until_graduation_within_its_budget(kafka_bootstrap: str, tmp_path: Path,
                                                                    unique_name: str) -> None:
    run_id = f"cons{unique_name}"
    learner = ServiceProcess("learner", learner_env(kafka_bootstrap, tmp_path / "checkpoints",
                                                    f"learner-{unique_name}"), tmp_path / "logs")
    curriculum = {"levels": [0], "window": 1, "min_env_steps": 0, "advance_threshold": 0.05,
                  "advance_over_heuristic": False, "evaluation_envs": 8, "evaluation_every_steps": ROUND,
                  "consolidation_env_steps": CONSOLIDATION}
    env = orchestrator_env(kafka_bootstrap, tmp_path / "runs.db", learner.target)
    env["GAELP_ORCHESTRATOR_CURRICULUM"] = json.dumps(curriculum)
    env["GAELP_ORCHESTRATOR_PHASES"] = json.dumps({"group_id": f"phases-{unique_name}",
                                                   "historical": {"campaigns": 16, "days": 1}})
    orchestrator = ServiceProcess("orchestrator", env, tmp_path / "logs")
    try:
        start_together(learner, orchestrator)
        start_run(orchestrator, run_id, 0)
        status = wait_until(lambda: (s := run_status(orchestrator, run_id)).consolidation_env_steps > 0 and s,
                            600, "the curriculum to complete", logs=orchestrator.log_tail)
        assert status.state == "running" and status.phase == SIM and not status.phase_work_done
        assert [level.decision for level in status.levels] == ["complete"]

        status = wait_until(lambda: (s := run_status(orchestrator, run_id)).phase_work_done and s, 300,
                            "the consolidation budget to be spent", logs=orchestrator.log_tail)
        assert CONSOLIDATION <= status.consolidation_env_steps < CONSOLIDATION + ROUND
        assert status.state == "running" and status.phase == SIM
        time.sleep(2)
        waiting = run_status(orchestrator, run_id)
        assert waiting.env_steps == status.env_steps, "no training while the decision is pending"

        produce(kafka_bootstrap, [(ASSESSMENTS, run_id, assessment(run_id, SIM, waiting.policy_version))])
        status = wait_until(lambda: (s := run_status(orchestrator, run_id)).phase == HIST
                            and s.phase_work_done and s, 180, "phase 2's figures", logs=orchestrator.log_tail)
        assert status.consolidation_env_steps == 0, "the count belongs to phase 1"
        assert {"historical_match", "prediction_accuracy", "prediction_correlation",
                "dr_agent"} <= set(status.historical)
        # Phase 2's window holds its own figures only: training rounds stay phase 1's.
        # Other tests' records share the topic (some deliberately undecodable): read this run's only.
        episodes = [events_pb2.EpisodeSummary.FromString(r.value)
                    for r in read_topic(kafka_bootstrap, EPISODES.name) if r.key == run_id.encode()]
        phase_2 = [e for e in episodes if e.phase == HIST]
        assert [e.task for e in phase_2] == ["historical-validation"]
    finally:
        orchestrator.stop()
        learner.stop()
