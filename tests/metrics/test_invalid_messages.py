"""Bad episodes, violations and learner stats in a batch with good ones: each bad one in the DLQ once,
nothing of it in the tables, the good ones counted, the run readable (gRPC and dashboard) also after a
restart from the changelogs."""

from __future__ import annotations

import asyncio
import json
import math
import time
import urllib.request
from pathlib import Path
from typing import Any

from gaelp.bus import EPISODES, LEARNER_METRICS, VIOLATIONS, BusProducer, ensure_topics
from gaelp.bus.reader import read_topic
from gaelp.config import load_settings
from gaelp.v1 import common_pb2, events_pb2, metrics_pb2

SIM = common_pb2.PHASE_SIMULATION


def _episode(run_id: str, index: int, **fields: Any) -> events_pb2.EpisodeSummary:
    values = {"run_id": run_id, "episode_id": f"{run_id}-{index}", "phase": SIM, "task": "basic",
              "normalized_reward": 0.5, "success": True, "roas": 2.0, "spend": 5.0, "revenue": 10.0,
              "budget": 10.0, "clicks": 10, "conversions": 1, **fields}
    return events_pb2.EpisodeSummary(**values)


def _violation(run_id: str, index: int, **fields: Any) -> events_pb2.Violation:
    values = {"violation_id": f"{run_id}-v{index}", "campaign_id": "c1", "run_id": run_id, "rule": "daily",
              "severity": events_pb2.SEVERITY_WARNING, "amount": 5.0, "phase": SIM, **fields}
    return events_pb2.Violation(**values)


def _stats(run_id: str, version: int, **fields: Any) -> events_pb2.LearnerStats:
    values = {"run_id": run_id, "policy_version": version, "algorithm": "ppo", "entropy": 0.5,
              "losses": {"policy": 0.1}, "trained_samples": 100 * version, **fields}
    return events_pb2.LearnerStats(**values)


async def _produce(settings: Any, run_id: str, sent: dict[str, list[int]], bad_episodes: list[Any],
                   bad_violations: list[Any], bad_stats: list[Any]) -> None:
    await ensure_topics(settings.kafka)  # as the services do: the tables' partitions follow these
    async with BusProducer(settings.kafka) as producer:
        for index in range(6):
            sent["good"].append((await producer.send(EPISODES, run_id, _episode(run_id, index))).offset)
            if index < len(bad_episodes):
                sent["bad"].append((await producer.send(EPISODES, run_id, bad_episodes[index])).offset)
        await producer.send_raw(EPISODES.name, b"someone-else", _episode(run_id, 95).SerializeToString(), [])
        await producer.send_raw(EPISODES.name, run_id.encode(), _episode("", 96).SerializeToString(), [])
        for index in range(3):
            await producer.send(VIOLATIONS, "c1", _violation(run_id, index))
            await producer.send(VIOLATIONS, "c1", bad_violations[index])
        await producer.send(VIOLATIONS, "c1", bad_violations[3])
        for version in (1, 2):
            await producer.send(LEARNER_METRICS, run_id, _stats(run_id, version))
            await producer.send(LEARNER_METRICS, run_id, bad_stats[version - 1])


def _dashboard(service: Any, run_id: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{service.http_port}/api/runs/{run_id}", timeout=10) as r:
        assert r.status == 200
        return dict(json.loads(r.read()))


def _episodes(service: Any, run_id: str) -> int:
    request = metrics_pb2.GetRunSummaryRequest(run_id=run_id)
    return int(service.stub().GetRunSummary(request, timeout=5).episodes)


def _wait(condition: Any, timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_bad_messages_go_alone_and_write_nothing(
    metrics_launcher: Any, kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    group_id = f"metrics-{unique_name}"
    run_id = f"bad-{unique_name}"
    settings = load_settings(kafka={"bootstrap": kafka_bootstrap, "enable_idempotence": False, "acks": "1"})
    bad_episodes = [
        _episode(run_id, 90, phase=17),  # an unknown phase enum
        _episode(run_id, 91, roas=math.nan),
        _episode(run_id, 92, spend=math.inf),
        _episode(run_id, 93, clicks=-1),
        _episode(run_id, 94, curriculum_level=3, curriculum_levels=2),
    ]
    bad_violations = [_violation(run_id, 90, amount=math.nan), _violation(run_id, 91, amount=-2.0),
                      _violation(run_id, 92, violation_id=""), _violation(run_id, 93, severity=8)]
    bad_stats = [_stats(run_id, 90, losses={"policy": math.inf}), _stats(run_id, 91, trained_samples=-1)]
    sent: dict[str, list[int]] = {"good": [], "bad": []}
    # Everything is produced before the service starts, so its first batches mix bad and good.
    asyncio.run(_produce(settings, run_id, sent, bad_episodes, bad_violations, bad_stats))

    service = metrics_launcher(tmp_path / "first", group_id)
    assert _wait(lambda: _episodes(service, run_id) >= 6), service.log()[-3000:]

    def view_complete() -> bool:
        view = _dashboard(service, run_id)
        return len(view["violations"]) == 3 and view["learner"] is not None \
            and len(view["learner"]["history"]) == 2

    assert _wait(view_complete), service.log()[-3000:]

    def dead_letters() -> list[Any]:
        return [r for r in asyncio.run(read_topic(kafka_bootstrap, settings.kafka.dlq_topic, timeout_s=60))
                if ("dlq.consumer.group", group_id.encode()) in list(r.headers)]

    expected_dead = len(bad_episodes) + 2 + len(bad_violations) + len(bad_stats)
    assert _wait(lambda: len(dead_letters()) >= expected_dead), service.log()[-3000:]
    dead = dead_letters()
    assert len(dead) == expected_dead, "each bad message once"
    origins = [(dict(r.headers)["dlq.source.topic"].decode(), int(dict(r.headers)["dlq.source.offset"]))
               for r in dead]
    assert len(set(origins)) == expected_dead
    episode_offsets = sorted(offset for topic, offset in origins if topic == EPISODES.name)
    assert set(sent["bad"]) <= set(episode_offsets)
    assert {dict(r.headers)["dlq.error.class"] for r in dead} == {b"InvalidMessage"}

    def check(target: Any) -> None:
        summary = target.stub().GetRunSummary(metrics_pb2.GetRunSummaryRequest(run_id=run_id), timeout=5)
        assert summary.episodes == 6
        assert [phase.phase for phase in summary.phases] == [SIM]
        (phase,) = summary.phases
        assert phase.mean_roas == 2.0 and phase.total_spend == 30.0 and phase.violations == 3
        assessment = target.stub().GetAssessment(metrics_pb2.GetAssessmentRequest(run_id=run_id), timeout=5)
        assert all(math.isfinite(c.value) for c in assessment.criteria)
        view = _dashboard(target, run_id)
        assert [v["violation_id"] for v in view["violations"]] == [f"{run_id}-v{i}" for i in range(3)]
        assert [p["policy_version"] for p in view["learner"]["history"]] == [1, 2]
        assert view["learner"]["trained_samples"] == 200

    check(service)
    assert service.stop() == 0, service.log()[-3000:]
    restarted = metrics_launcher(tmp_path / "second", group_id)
    check(restarted)
    assert restarted.stop() == 0
