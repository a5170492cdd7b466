"""Malformed TransitionBatch messages go to the DLQ once each, with their origin; the good one is trained."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
from dataplane_support import (
    BATCH_SAMPLES,
    latest_manifest,
    learner_env,
    learner_stats,
    pending_batch_ids,
    read_topic,
    run_entry,
    sample_chunk,
    wait_until,
)

from gaelp.bus import TRANSITIONS, BusProducer
from gaelp.bus.tensors import to_tensor
from gaelp.config import GaelpSettings
from gaelp.embedded.processes import ServiceProcess
from gaelp.v1 import common_pb2, events_pb2
from orchestrator.messages import transition_batch


def _batches(run_id: str) -> dict[str, events_pb2.TransitionBatch]:
    chunk, _ = sample_chunk()
    actor = f"{run_id}-actor-0"
    good = transition_batch(chunk, run_id, actor, f"{run_id}:0:good", 0, "level-0")
    wrong_shape = transition_batch(chunk, run_id, actor, f"{run_id}:0:wrong-shape", 0, "level-0")
    wrong_shape.observations.CopyFrom(to_tensor(chunk.obs[:, :, :-1]))
    with_nan = transition_batch(chunk, run_id, actor, f"{run_id}:0:nan", 0, "level-0")
    rewards = chunk.rewards.copy()
    rewards[3, 1] = np.nan
    with_nan.rewards.CopyFrom(to_tensor(rewards))
    overflowing = transition_batch(chunk, run_id, actor, f"{run_id}:0:overflow", 0, "level-0")
    # (2**31 - 1)**3 elements: a count int64 cannot hold, next to 32 bytes of data.
    overflowing.rewards.CopyFrom(common_pb2.Tensor(dtype="float32", shape=[2**31 - 1] * 3, data=b"\0" * 32))
    return {"wrong-shape": wrong_shape, "nan": with_nan, "overflow": overflowing, "good": good}


async def _produce(settings: GaelpSettings, key: str, batches: list[events_pb2.TransitionBatch]) -> list[int]:
    async with BusProducer(settings.kafka) as producer:
        sent = [await producer.send_raw(TRANSITIONS.name, key.encode(), b.SerializeToString(), [])
                for b in batches]
    assert len({meta.partition for meta in sent}) == 1
    return [meta.offset for meta in sent]


def test_invalid_batches_are_dead_lettered_and_the_learner_goes_on(
    kafka_bootstrap: str, bus_settings: GaelpSettings, tmp_path: Path, unique_name: str
) -> None:
    run_id = f"dlq{unique_name}"
    group = f"learner-{unique_name}"
    checkpoints = tmp_path / "checkpoints"
    batches = _batches(run_id)
    learner = ServiceProcess(
        "learner", learner_env(kafka_bootstrap, checkpoints, group, rollout_samples=BATCH_SAMPLES),
        tmp_path / "logs",
    )
    try:
        learner.start()
        offsets = asyncio.run(_produce(bus_settings, f"{run_id}-actor-0", list(batches.values())))

        def trained_good_batch() -> bool:
            stats = learner_stats(learner, run_id)
            return stats is not None and stats.trained_samples == BATCH_SAMPLES

        wait_until(trained_good_batch, 90, "the good batch to be trained", logs=learner.log_tail)
        stats = learner_stats(learner, run_id)
        assert stats is not None and stats.policy_version == 1
        assert learner.stop() == 0
    finally:
        learner.kill()

    dead: dict[int, tuple[Any, dict[str, str]]] = {}
    for record in read_topic(kafka_bootstrap, bus_settings.kafka.dlq_topic):
        headers = {k: v.decode() for k, v in record.headers or ()}
        if headers.get("dlq.consumer.group") == group:
            offset = int(headers["dlq.source.offset"])
            assert offset not in dead, f"offset {offset} dead-lettered twice"
            dead[offset] = (record, headers)
    bad_offsets = offsets[:3]
    assert sorted(dead) == bad_offsets, "exactly the three bad batches are dead-lettered, once each"
    # The bus rejects what no consumer may use; the learner what does not fit its spaces.
    classes = {"wrong-shape": "InvalidBatch", "nan": "InvalidMessage", "overflow": "InvalidMessage"}
    for name, offset in zip(("wrong-shape", "nan", "overflow"), bad_offsets, strict=True):
        record, headers = dead[offset]
        assert headers["dlq.source.topic"] == TRANSITIONS.name
        assert headers["dlq.error.class"] == classes[name]
        assert int(headers["dlq.source.partition"]) >= 0
        assert record.value == batches[name].SerializeToString()
        assert record.key == f"{run_id}-actor-0".encode()
    assert "observations" in dead[bad_offsets[0]][1]["dlq.error.message"]
    assert "NaN" in dead[bad_offsets[1]][1]["dlq.error.message"]
    assert "rewards" in dead[bad_offsets[2]][1]["dlq.error.message"]

    found = latest_manifest(checkpoints)
    assert found is not None
    entry = run_entry(found[1], run_id)
    assert entry is not None
    assert entry["trained_batch_ids"] == [batches["good"].batch_id]
    assert entry["dropped_batch_ids"] == [] and pending_batch_ids(found[0], entry) == []
