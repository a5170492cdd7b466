"""Every episode and learner update of each run, for the dashboard's paged JSON API.

The faust tables keep what the criteria need (bounded windows, curves merged to a fixed number of
points); a chart of a whole run needs every episode. The history reads the episodes and learner
topics itself, from the start of every partition and without a consumer group (no commits, no
rebalance of the service's own group), and keeps per run one column per figure in typed arrays
(about 80 bytes an episode). Like the tables, it counts each record of the topic once (a reconnect
reads on after the offsets it folded). Records that do not decode, fail validation or carry another
run's key are skipped here: the stream agents send those to the DLQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from array import array
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from gaelp.bus import EPISODES, LEARNER_METRICS
from gaelp.bus.topics import Topic
from gaelp.bus.validation import InvalidMessage, validate
from gaelp.client.streams import read_messages
from gaelp.v1 import events_pb2

logger = logging.getLogger(__name__)

EPISODE_FIGURES = ("normalized_reward", "roas", "ctr", "total_reward", "spend")
LEARNER_FIGURES = ("entropy", "approx_kl", "grad_norm", "samples_per_second", "policy_lag_mean",
                   "policy_lag_max")
RETRY_S = 2.0


@dataclass
class EpisodeColumns:
    """One run's non-failed episodes in arrival order; `episode` is the run-wide index (failed counted)."""

    episode: array[int] = field(default_factory=lambda: array("q"))
    phase: array[int] = field(default_factory=lambda: array("b"))
    task: array[int] = field(default_factory=lambda: array("l"))
    level: array[int] = field(default_factory=lambda: array("l"))
    policy_version: array[int] = field(default_factory=lambda: array("q"))
    success: array[int] = field(default_factory=lambda: array("b"))
    figures: dict[str, array[float]] = field(
        default_factory=lambda: {name: array("d") for name in EPISODE_FIGURES})
    tasks: list[str] = field(default_factory=list)
    seen: int = 0  # episodes of the run, failed ones included
    failed: int = 0

    def add(self, episode: events_pb2.EpisodeSummary) -> None:
        self.seen += 1
        if episode.failed:
            self.failed += 1
            return
        if episode.task not in self.tasks:
            self.tasks.append(episode.task)
        self.episode.append(self.seen)
        self.phase.append(episode.phase)
        self.task.append(self.tasks.index(episode.task))
        self.level.append(episode.curriculum_level)
        self.policy_version.append(episode.policy_version)
        self.success.append(int(episode.success))
        for name, column in self.figures.items():
            column.append(float(getattr(episode, name)))

    def __len__(self) -> int:
        return len(self.episode)

    def page(self, start: int, limit: int) -> dict[str, Any]:
        end = min(start + limit, len(self))
        return {
            "total": len(self), "start": start, "end": max(end, start), "seen": self.seen,
            "failed": self.failed, "tasks": list(self.tasks),
            "columns": {
                "episode": self.episode[start:end].tolist(),
                "phase": self.phase[start:end].tolist(),
                "task": self.task[start:end].tolist(),
                "curriculum_level": self.level[start:end].tolist(),
                "policy_version": self.policy_version[start:end].tolist(),
                "success": self.success[start:end].tolist(),
                **{name: column[start:end].tolist() for name, column in self.figures.items()},
            },
        }


@dataclass
class LearnerColumns:
    """One run's learner updates in arrival order; losses by name (a loss missing in an update: NaN)."""

    policy_version: array[int] = field(default_factory=lambda: array("q"))
    figures: dict[str, array[float]] = field(
        default_factory=lambda: {name: array("d") for name in LEARNER_FIGURES})
    losses: dict[str, array[float]] = field(default_factory=dict)
    algorithm: str = ""

    def add(self, stats: events_pb2.LearnerStats) -> None:
        self.algorithm = stats.algorithm
        count = len(self.policy_version)
        self.policy_version.append(stats.policy_version)
        for name, column in self.figures.items():
            column.append(float(getattr(stats, name)))
        for name in stats.losses:
            if name not in self.losses:
                self.losses[name] = array("d", [float("nan")] * count)
        for name, column in self.losses.items():
            column.append(stats.losses.get(name, float("nan")))

    def __len__(self) -> int:
        return len(self.policy_version)

    def page(self, start: int, limit: int) -> dict[str, Any]:
        end = min(start + limit, len(self))

        def finite(values: array[float]) -> list[float | None]:
            return [None if value != value else value for value in values[start:end]]  # NaN: JSON null

        return {
            "total": len(self), "start": start, "end": max(end, start), "algorithm": self.algorithm,
            "columns": {"policy_version": self.policy_version[start:end].tolist(),
                        **{name: column[start:end].tolist() for name, column in self.figures.items()}},
            "losses": {name: finite(column) for name, column in sorted(self.losses.items())},
        }


class RunHistory:
    """Reads the two topics in the background while the dashboard serves."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.episodes: dict[str, EpisodeColumns] = {}
        self.learners: dict[str, LearnerColumns] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._follow(EPISODES, self._episode), name="history-episodes"),
            asyncio.create_task(self._follow(LEARNER_METRICS, self._stats), name="history-learner"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def _episode(self, key: str, episode: events_pb2.EpisodeSummary) -> None:
        if key == episode.run_id:
            self.episodes.setdefault(episode.run_id, EpisodeColumns()).add(episode)

    def _stats(self, key: str, stats: events_pb2.LearnerStats) -> None:
        if key == stats.run_id:
            self.learners.setdefault(stats.run_id, LearnerColumns()).add(stats)

    async def _follow(self, topic: Topic[Any], fold: Callable[[str, Any], None]) -> None:
        # Offsets already folded per partition: a reconnect after a broker error reads on from there.
        folded: dict[int, int] = {}
        while True:
            try:
                # aclosing: a cancelled task still stops the reader's consumer at once (read_messages is
                # an async generator; its signature says AsyncIterator).
                reader = cast(AsyncGenerator[tuple[Any, Any], None],
                              read_messages(self.bootstrap, topic, follow=True))
                async with contextlib.aclosing(reader) as records:
                    async for record, message in records:
                        if record.offset < folded.get(record.partition, 0):
                            continue
                        folded[record.partition] = record.offset + 1
                        try:
                            validate(topic.name, message)
                        except InvalidMessage:
                            continue
                        key = record.key.decode(errors="replace") if record.key is not None else ""
                        fold(key, message)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                logger.warning("dashboard history: reading %s failed, retrying: %r", topic.name, error)
                await asyncio.sleep(RETRY_S)
