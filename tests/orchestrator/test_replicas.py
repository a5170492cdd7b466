"""Two orchestrator replicas on one PostgreSQL run store, as real processes.

The owner of a run is SIGKILLed mid-phase: the other replica takes the run over once the lease
expires and resumes it from the store, counters continuing and batch ids never reused; both
replicas answer the control API for runs the other drives; operators' pause/resume through the
replica that does not drive a run, and a phase input for it, reach the run's holder. Leases are a
few seconds long here so that the take-over is quick.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import grpc
from dataplane_support import (
    BATCH_SAMPLES,
    learner_env,
    orchestrator_env,
    produced_batches,
    run_status,
    start_run,
    wait_until,
)

from gaelp.bus import ASSESSMENTS, BusProducer
from gaelp.config import load_settings
from gaelp.embedded.processes import ServiceProcess, start_together
from gaelp.v1 import (
    common_pb2,
    events_pb2,
    learner_pb2,
    learner_pb2_grpc,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
)

ACTORS = 2
ROUNDS = 10
LEASE_S, RENEW_S = 5.0, 1.0


def replica(name: str, bootstrap: str, postgres_url: str, learner_target: str, tmp_path: Path,
            phase_group: str) -> ServiceProcess:
    env = orchestrator_env(bootstrap, tmp_path / "unused.db", learner_target, ACTORS)
    env["GAELP_DATABASE_URL"] = postgres_url
    env["GAELP_ORCHESTRATOR_LEASES"] = json.dumps(
        {"replica_id": name, "duration_s": LEASE_S, "renew_interval_s": RENEW_S})
    env["GAELP_ORCHESTRATOR_PHASES"] = json.dumps({"group_id": phase_group, "last_phase": 4})
    return ServiceProcess("orchestrator", env, tmp_path / f"logs-{name}")


def stored_document(postgres_url: str, run_id: str) -> dict[str, Any]:
    async def read() -> Any:
        connection = await asyncpg.connect(postgres_url)
        try:
            return await connection.fetchval("SELECT document FROM runs WHERE run_id = $1", run_id)
        finally:
            await connection.close()

    text = asyncio.run(read())
    assert text is not None, f"run {run_id} is not in the run store"
    return dict(json.loads(text))


def graduate(bootstrap: str, run_id: str) -> None:
    """A passing phase-1 assessment on gaelp.assessments.v1, as the metrics service would send it."""
    message = events_pb2.GraduationAssessment(
        run_id=run_id, phase=common_pb2.PHASE_SIMULATION, policy_version=0, ready_to_graduate=True,
        reason="all criteria passed", episodes_considered=50,
        criteria=[events_pb2.CriterionResult(name="c", value=0.9, threshold=0.5, comparison=">=",
                                             passed=True)],
    )

    async def send() -> None:
        settings = load_settings(kafka={"bootstrap": bootstrap, "enable_idempotence": False, "acks": "1"})
        async with BusProducer(settings.kafka, client_id="replica-test") as producer:
            await producer.send(ASSESSMENTS, run_id, message)

    asyncio.run(send())


def control(orchestrator: ServiceProcess, method: str, run_id: str) -> orchestrator_pb2.RunStatus:
    with grpc.insecure_channel(orchestrator.target) as channel:
        stub = orchestrator_pb2_grpc.OrchestratorStub(channel)
        call = getattr(stub, method)
        status: orchestrator_pb2.RunStatus = call(orchestrator_pb2.RunIdRequest(run_id=run_id), timeout=30)
        return status


def test_sigkilled_owner_the_other_replica_takes_the_run_over(kafka_bootstrap: str, postgres_url: str,
                                                              tmp_path: Path, unique_name: str) -> None:
    run_id = f"rep{unique_name}"
    learner = ServiceProcess(
        "learner", learner_env(kafka_bootstrap, tmp_path / "checkpoints", f"learner-{unique_name}"),
        tmp_path / "logs",
    )
    group = f"phases-{unique_name}"
    owner = replica("replica-a", kafka_bootstrap, postgres_url, learner.target, tmp_path, group)
    other = replica("replica-b", kafka_bootstrap, postgres_url, learner.target, tmp_path, group)
    total_steps = ROUNDS * ACTORS * BATCH_SAMPLES

    def logs() -> str:
        return f"--- replica-a\n{owner.log_tail()}\n--- replica-b\n{other.log_tail()}"

    try:
        start_together(learner, owner, other)
        start_run(owner, run_id, total_steps)
        wait_until(lambda: run_status(owner, run_id).batches_published >= 3 * ACTORS, 90,
                   "a few rounds of batches", every_s=0.05, logs=logs)
        seen_elsewhere = run_status(other, run_id)  # from the store: replica-b does not drive it
        assert seen_elsewhere.state == "running" and seen_elsewhere.batches_published >= 2 * ACTORS
        assert seen_elsewhere.task == run_status(owner, run_id).task
        owner.kill()
        killed_at = time.monotonic()
        stored = stored_document(postgres_url, run_id)
        assert stored["state"] == "running"
        assert 0 < stored["env_steps"] < total_steps, "killed too late"

        # Resumed: the counters move past what the dead owner stored.
        resumed = wait_until(
            lambda: (s := run_status(other, run_id)).batches_published > stored["batches_published"] and s,
            LEASE_S + 10, "replica-b to take the run over and publish", every_s=0.1, logs=logs)
        print(f"take-over: first batch from replica-b {time.monotonic() - killed_at:.1f} s after the"
              f" SIGKILL (lease {LEASE_S:.0f} s, renewal every {RENEW_S:.0f} s)")
        assert resumed.state == "running" and resumed.task
        assert resumed.episodes >= stored["episodes"] and resumed.env_steps > stored["env_steps"]
        assert resumed.task_env_steps >= stored["curriculum"]["steps_on_task"]
        wait_until(lambda: run_status(other, run_id).state == "completed", 180,
                   "the resumed run to finish its step budget", logs=logs)
        final = run_status(other, run_id)
    finally:
        other.stop()
        owner.stop()
        learner.stop()

    assert final.env_steps >= total_steps
    produced = produced_batches(kafka_bootstrap, run_id)
    ids = [b.batch_id for b in produced]
    assert [batch_id for batch_id, count in Counter(ids).items() if count > 1] == []
    for actor in range(ACTORS):
        sequences = sorted(int(b.batch_id.rsplit(":", 1)[1]) for b in produced
                           if b.batch_id.startswith(f"{run_id}:{actor}:"))
        # replica-b went on from the stored sequence: numbers above it, none reused.
        assert sequences[-1] >= stored["actor_batches"][actor], (sequences, stored["actor_batches"])
    assert len(produced) >= final.batches_published > stored["batches_published"]


def test_control_api_and_phase_inputs_reach_the_replica_driving_the_run(
        kafka_bootstrap: str, postgres_url: str, tmp_path: Path, unique_name: str) -> None:
    run_id = f"ctl{unique_name}"
    group = f"phases-{unique_name}"
    driver = replica("replica-a", kafka_bootstrap, postgres_url, "", tmp_path, group)
    other = replica("replica-b", kafka_bootstrap, postgres_url, "", tmp_path, group)

    def logs() -> str:
        return f"--- replica-a\n{driver.log_tail()}\n--- replica-b\n{other.log_tail()}"

    try:
        start_together(driver, other)
        with grpc.insecure_channel(driver.target) as channel:
            orchestrator_pb2_grpc.OrchestratorStub(channel).StartRun(orchestrator_pb2.StartRunRequest(
                run_id=run_id, config_json=json.dumps({"kind": "smoke", "episodes": 10**9})), timeout=30)
        wait_until(lambda: run_status(driver, run_id).episodes > 0, 120, "smoke episodes", logs=logs)
        with grpc.insecure_channel(other.target) as channel:
            listed = orchestrator_pb2_grpc.OrchestratorStub(channel).ListRuns(
                orchestrator_pb2.ListRunsRequest(), timeout=10)
        assert [status.run_id for status in listed.runs] == [run_id]

        # Pause through the replica that does not drive the run: the driver applies it.
        paused = control(other, "PauseRun", run_id)
        assert paused.state == "paused", paused.detail
        assert run_status(driver, run_id).state == "paused"
        episodes = run_status(driver, run_id).episodes
        resumed = control(other, "ResumeRun", run_id)
        assert resumed.state == "running", resumed.detail
        wait_until(lambda: run_status(driver, run_id).episodes > episodes, 60, "episodes after resume",
                   logs=logs)

        # Whichever replica the shared group hands the assessment to, the driver applies it.
        graduate(kafka_bootstrap, run_id)
        historical = common_pb2.PHASE_HISTORICAL
        wait_until(lambda: run_status(driver, run_id).phase == historical, 60, "graduation to phase 2",
                   logs=logs)
        wait_until(lambda: run_status(other, run_id).phase == historical, 30, "the stored phase", logs=logs)
    finally:
        other.stop()
        driver.stop()


def test_get_policy_of_a_run_never_opened_is_not_found_and_creates_nothing(
        kafka_bootstrap: str, tmp_path: Path, unique_name: str) -> None:
    learner = ServiceProcess(
        "learner", learner_env(kafka_bootstrap, tmp_path / "checkpoints", f"learner-{unique_name}"),
        tmp_path / "logs",
    )
    try:
        learner.start()
        with grpc.insecure_channel(learner.target) as channel:
            stub = learner_pb2_grpc.LearnerStub(channel)
            for attempt in range(2):  # the first refusal must not have created the run
                try:
                    stub.GetPolicy(learner_pb2.GetPolicyRequest(run_id="never-opened"), timeout=10)
                except grpc.RpcError as error:
                    assert error.code() == grpc.StatusCode.NOT_FOUND, (attempt, error.details())
                else:
                    raise AssertionError("GetPolicy answered for a run never opened")
            stream = stub.WatchPolicy(learner_pb2.WatchPolicyRequest(run_id="never-opened"), timeout=10)
            try:
                next(iter(stream))
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.NOT_FOUND
            else:
                raise AssertionError("WatchPolicy streamed for a run never opened")
            stats = learner_pb2.GetLearnerStatsRequest(run_id="never-opened")
            try:
                stub.GetLearnerStats(stats, timeout=10)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.NOT_FOUND
            else:
                raise AssertionError("the refused reads created the run")
            opened = stub.OpenRun(learner_pb2.OpenRunRequest(run_id="opened"), timeout=30)
            assert opened.run_id == "opened" and opened.version == 0
            again = stub.OpenRun(learner_pb2.OpenRunRequest(run_id="opened"), timeout=30)
            assert again.version == 0 and again.created_at == opened.created_at  # idempotent
            policy = stub.GetPolicy(learner_pb2.GetPolicyRequest(run_id="opened"), timeout=10)
            assert policy.run_id == "opened" and policy.version == 0
    finally:
        learner.stop()
