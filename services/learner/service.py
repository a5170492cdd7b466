"""The learner's event loop side: batches in, updates in a worker thread, policies and stats out.

Offsets: the consumer does not commit on its own. After every checkpoint the learner commits the
offsets that checkpoint holds, and on (re)assignment it seeks to them, so the model state and the
read position always agree: a crash replays exactly what the lost state had trained on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from aiokafka import TopicPartition
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry import metrics

from gaelp.bus import LEARNER_METRICS, POLICY, BusConsumer, BusProducer, Delivery
from gaelp.config import GaelpSettings
from gaelp.rl.algorithms.base import Agent
from gaelp.rl.spaces import ActionLayout, flat_observation_dim
from gaelp.v1 import events_pb2
from learner.batches import DecodedBatch, InvalidBatch, decode_batch
from learner.checkpoints import CheckpointStore
from learner.tensorboard import LearnerBoard
from learner.trainer import RunTrainer, UpdateResult, build_run_trainer
from learner.warm_start import warm_start

logger = logging.getLogger(__name__)


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


def _partition(key: str) -> TopicPartition:
    topic, partition = key.rsplit(":", 1)
    return TopicPartition(topic, int(partition))


class LearnerService:
    def __init__(self, settings: GaelpSettings, producer: BusProducer) -> None:
        self.settings = settings
        self.config = settings.learner
        self.training = settings.training
        self.producer = producer
        env = self.training.make_space_env()
        self.observation_space, self.action_space = env.observation_space, env.action_space
        env.close()
        self.obs_dim = flat_observation_dim(self.observation_space)
        self.layout = ActionLayout.from_space(self.action_space)
        checkpoints = Path(settings.storage.checkpoint_dir)
        self.store = CheckpointStore(checkpoints / "learner", self.config.checkpoints_kept)
        self.policy_dir = checkpoints / "policies"
        self.runs: dict[str, RunTrainer] = {}
        self.offsets: dict[TopicPartition, int] = {}
        self.consumer: BusConsumer | None = None
        self.updates_since_checkpoint = 0
        self.policies: dict[str, events_pb2.PolicyUpdate] = {}
        self.stats: dict[str, events_pb2.LearnerStats] = {}
        self.policy_changed = asyncio.Condition()
        self._train_lock = asyncio.Lock()
        self.board = LearnerBoard(settings.storage.data_dir) if settings.telemetry.tensorboard else None
        meter = metrics.get_meter("gaelp.learner")
        self._samples_counter = meter.create_counter("gaelp.learner.trained_samples", unit="{transition}")
        self._dropped_counter = meter.create_counter("gaelp.learner.dropped_batches", unit="{batch}")
        self._lag_histogram = meter.create_histogram("gaelp.learner.policy_lag", unit="{version}")
        self._update_seconds = meter.create_histogram("gaelp.learner.update_duration", unit="s")

    # ---- runs and policies -------------------------------------------------------------------
    def run(self, run_id: str) -> RunTrainer:
        """The run's trainer; a run opened (OpenRun) or sending its first batch starts at version 0
        (seeded init). Read methods never call this for ids they do not know."""
        trainer = self.runs.get(run_id)
        if trainer is None:
            trainer = build_run_trainer(
                run_id, self.training, self.config, self.observation_space, self.action_space
            )
            if self.config.warm_start.enabled:
                # Before version 0 is published; a restored run's checkpoint then replaces it.
                warm_start(trainer.agent, self.config.warm_start, self.training.seed)
            self.runs[run_id] = trainer
            self.policies[run_id] = self._policy_message(trainer)
        return trainer

    def _policy_message(self, trainer: RunTrainer) -> events_pb2.PolicyUpdate:
        weights = trainer.agent.policy_state()
        message = events_pb2.PolicyUpdate(
            run_id=trainer.run_id,
            version=trainer.version,
            algorithm=trainer.agent.algo,
            created_at=_now(),
            trained_samples=trainer.trained_samples,
            rollout_samples=trainer.samples_per_update(),
        )
        if len(weights) <= self.config.policy_inline_max_bytes:
            message.weights = weights
        else:
            run_dir = self.policy_dir / trainer.run_id
            path = run_dir / f"v{trainer.version:08d}.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(weights)
            message.checkpoint_uri = path.resolve().as_uri()
            # One file per version: keep the newest (zero-padded names sort by version). An actor
            # offered a version pruned since then loads a newer one (PolicyHolder.apply_offer).
            for old in sorted(run_dir.glob("v*.pt"))[:-self.config.policy_files_kept]:
                old.unlink(missing_ok=True)
        return message

    # ---- restore and offsets ------------------------------------------------------------------
    def restore(self) -> None:
        checkpoint = self.store.latest()
        if checkpoint is None:
            logger.info("no learner checkpoint; starting fresh")
            return
        for saved in checkpoint.runs:
            trainer = self.run(saved.run_id)
            extra = trainer.agent.load_checkpoint(saved.state_file)
            # Updates after this checkpoint may have published versions up to saved.version +
            # checkpoint_every_updates before the crash; skip past them so no number is reused.
            trainer.version = saved.version + self.config.checkpoint_every_updates
            trainer.trained_batch_ids = list(saved.trained_batch_ids)
            trainer.dropped_batch_ids = list(saved.dropped_batch_ids)
            trainer.trained_samples = saved.trained_samples
            trainer.seen = set(saved.trained_batch_ids) | set(saved.dropped_batch_ids)
            for raw in extra.get("pending", []):
                batch = self._decode(events_pb2.TransitionBatch.FromString(raw), raw)
                trainer.pending.append(batch)
                trainer.seen.add(batch.batch_id)
                trainer.lanes = batch.lanes
            self.policies[saved.run_id] = self._policy_message(trainer)
        self.offsets = {_partition(key): offset for key, offset in checkpoint.offsets.items()}
        logger.info(
            "restored learner checkpoint",
            extra={"checkpoint": str(checkpoint.path), "runs": len(checkpoint.runs),
                   "offsets": checkpoint.offsets},
        )

    async def on_assigned(self, partitions: set[TopicPartition]) -> None:
        assert self.consumer is not None
        self.consumer.seek({tp: off for tp, off in self.offsets.items() if tp in partitions})

    # ---- the batch handler ---------------------------------------------------------------------
    def _decode(self, message: events_pb2.TransitionBatch, raw: bytes) -> DecodedBatch:
        return decode_batch(message, self.obs_dim, self.layout, raw)

    async def handle(self, deliveries: Sequence[Delivery[events_pb2.TransitionBatch]]) -> None:
        assert self.consumer is not None
        for delivery in deliveries:
            record = delivery.record
            try:
                batch = self._decode(delivery.value, record.value)
            except InvalidBatch as error:
                await self.consumer.dead_letter(record, error)
            else:
                trainer = self.run(batch.run_id)
                reason = trainer.add(batch)
                if reason is not None:
                    self._dropped_counter.add(1, {"reason": reason})
                    logger.info("batch not trained", extra={"batch_id": batch.batch_id, "reason": reason,
                                                            "batch_version": batch.policy_version,
                                                            "learner_version": trainer.version})
            self.offsets[TopicPartition(record.topic, record.partition)] = record.offset + 1
            # Settled: an update failing below must not dead-letter a batch already taken in.
            self.consumer.mark_processed(record)
            for trainer in list(self.runs.values()):
                if trainer.ready():
                    await self._update(trainer)

    def _train(self, trainer: RunTrainer) -> tuple[UpdateResult, events_pb2.PolicyUpdate]:
        """One update and the message of the policy it made (in the worker thread: serializing
        large weights takes milliseconds the event loop's fetches and gRPC calls need)."""
        result = trainer.update()
        return result, self._policy_message(trainer)

    async def _update(self, trainer: RunTrainer) -> None:
        async with self._train_lock:
            result, policy = await asyncio.to_thread(self._train, trainer)
        self._record(trainer, result)
        stats = self._stats_message(trainer, result)
        self.policies[trainer.run_id] = policy
        self.stats[trainer.run_id] = stats
        # Watchers first (Learner.WatchPolicy): actors waiting for this version act on it while the
        # broker acknowledges the topic messages, instead of after those round trips.
        async with self.policy_changed:
            self.policy_changed.notify_all()
        await asyncio.gather(self.producer.send(POLICY, trainer.run_id, policy),
                             self.producer.send(LEARNER_METRICS, trainer.run_id, stats))
        if self.board is not None:
            await asyncio.to_thread(self.board.record, stats)
        self.updates_since_checkpoint += 1
        if self.updates_since_checkpoint >= self.config.checkpoint_every_updates:
            await self.checkpoint()

    def _record(self, trainer: RunTrainer, result: UpdateResult) -> None:
        attributes = {"run_id": trainer.run_id, "algorithm": trainer.agent.algo}
        self._samples_counter.add(result.samples, attributes)
        self._lag_histogram.record(result.lag_max, attributes)
        self._update_seconds.record(result.seconds, attributes)
        logger.info("update", extra={"run_id": trainer.run_id, "version": result.version,
                                     "samples": result.samples, "seconds": round(result.seconds, 3),
                                     "lag_max": result.lag_max})

    def _stats_message(self, trainer: RunTrainer, result: UpdateResult) -> events_pb2.LearnerStats:
        losses = {k: float(v) for k, v in result.losses.items()}
        return events_pb2.LearnerStats(
            run_id=trainer.run_id,
            policy_version=result.version,
            algorithm=trainer.agent.algo,
            losses=losses,
            entropy=losses.get("entropy", 0.0),
            approx_kl=losses.get("approx_kl", 0.0),
            grad_norm=losses.get("grad_norm", 0.0),
            weight_change=result.weight_change,
            samples_per_second=result.samples / max(result.seconds, 1e-9),
            policy_lag_mean=result.lag_mean,
            policy_lag_max=result.lag_max,
            dropped_stale_batches=len(trainer.dropped_batch_ids),
            trained_samples=trainer.trained_samples,
            created_at=_now(),
        )

    # ---- checkpoints ---------------------------------------------------------------------------
    async def checkpoint(self) -> None:
        async with self._train_lock:
            offsets = {f"{tp.topic}:{tp.partition}": off for tp, off in self.offsets.items()}
            runs = []
            for trainer in self.runs.values():
                entry = {
                    "run_id": trainer.run_id,
                    "version": trainer.version,
                    "trained_batch_ids": trainer.trained_batch_ids,
                    "dropped_batch_ids": trainer.dropped_batch_ids,
                    "trained_samples": trainer.trained_samples,
                }
                pending = [b.raw for b in trainer.pending]

                def save(path: Path, agent: Agent = trainer.agent, pending: list[bytes] = pending) -> None:
                    agent.save_checkpoint(path, extra={"pending": pending})

                runs.append((entry, save))
            path = await asyncio.to_thread(self.store.write, offsets, runs)
            snapshot = dict(self.offsets)
        if self.consumer is not None:
            await self.consumer.commit_offsets(snapshot)
        self.updates_since_checkpoint = 0
        logger.info("checkpoint written", extra={"path": str(path), "offsets": offsets})
