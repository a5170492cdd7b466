"""faust's table recovery, with a changelog's end taken from the log itself where the broker's lags.

At every rebalance faust asks the broker for each changelog partition's end (its "highwater", the
last offset) and stops the worker with ConsistencyError when the offset it has already read for a
partition it keeps lies past that end. Tansu (the local broker) reports a partition's end as the
first offset of its last record batch + 1, not its last offset + 1: after one record and then a
batch of three (offsets 1-3), ListOffsets said 2 while a fetch returned offsets 0-3. faust's
producer writes a changelog's records in batches, so a member that had read a whole batch during
one rebalance's recovery stopped at the next with ConsistencyError ("2 > 1"). Tansu also hands a
fetch a record whose produce is still in flight and counts it only once acknowledged.

So every active changelog partition's end is the last offset its log holds
(`ChangelogLog.last_offsets`: what a fetch returns past the reported end). Where the offset read
still lies past that end (a record folded after the ends were taken), `confirm_read` reads the
partition up to that offset, for at most `metrics.highwater_catch_up_s`: records that are there (or
arrive within it) make the last of them the end; a log still short after that is a real
inconsistency (a changelog topic recreated under the worker) and stops the worker as faust's own
check did. Apache Kafka reports the last offset + 1 and serves only acknowledged records: there the
ends are as reported (one empty fetch a rebalance finds that) and nothing is read again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, cast

import faust
from aiokafka.structs import ConsumerRecord, TopicPartition
from faust.exceptions import ConsistencyError
from faust.tables import TableManager
from faust.tables.recovery import E_PERSISTED_OFFSET, Recovery
from faust.types import TP

from gaelp.bus.reader import read_from, read_range
from gaelp.config.sections.infra import KafkaSettings
from metrics.delivery import RangeReader

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class ChangelogLog:
    """The broker's partitions as their logs hold them, each read bounded by within_s."""

    kafka: KafkaSettings
    within_s: float

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[ConsumerRecord]:
        """The partition's records from start up to end; TimeoutError when the log lacks them."""
        return await read_range(self.kafka.bootstrap, topic, partition, start, end, client_id=self.client_id,
                                fetch_max_wait_ms=self.kafka.fetch_max_wait_ms, timeout_s=self.within_s)

    async def last_offsets(self, highwaters: Mapping[TP, int]) -> dict[TP, int]:
        """Each partition's last offset as its log holds it now, from its highwater on (the last
        offset as the broker reported it, -1 when none)."""
        starts = {TopicPartition(tp.topic, tp.partition): end + 1 for tp, end in highwaters.items()}
        found = await read_from(self.kafka.bootstrap, starts, client_id=self.client_id,
                                fetch_max_wait_ms=self.kafka.fetch_max_wait_ms, timeout_s=self.within_s)
        return {TP(tp.topic, tp.partition): max((record.offset for record in records), default=starts[tp] - 1)
                for tp, records in found.items()}

    @property
    def client_id(self) -> str:
        return f"{self.kafka.client_id}-metrics-reader"


def past_the_end(read: Mapping[TP, int | None], highwaters: Mapping[TP, int], tps: Iterable[TP]) -> set[TP]:
    """The partitions whose offset already read lies past their highwater, by faust's rule (an offset
    or highwater of 0 passes: faust's check reads both as numbers only when they are non-zero)."""
    return {tp for tp in tps
            if (offset := read.get(tp)) and (end := highwaters.get(tp)) and offset > end}


async def confirm_read(
    read_log: RangeReader,
    read: Mapping[TP, int | None],
    highwaters: MutableMapping[TP, int],
    tps: Iterable[TP],
) -> set[TP]:
    """For each partition read past its highwater (faust's figure: the reported end offset - 1), read
    the log from the highwater on up to the offset read (read_log raises TimeoutError when the log
    does not get there within its bound); where the records are there, the highwater becomes the
    last one. Returns the partitions whose log does not hold what was read."""
    behind = set()
    for tp in sorted(past_the_end(read, highwaters, tps)):
        offset = cast(int, read[tp])
        try:
            records = await read_log(tp.topic, tp.partition, highwaters[tp] + 1, offset + 1)
        except TimeoutError:
            behind.add(tp)
            continue
        last = max((record.offset for record in records), default=-1)
        if last >= offset:
            highwaters[tp] = last
        else:
            behind.add(tp)
    return behind


class CatchingUpRecovery(Recovery):
    """faust's Recovery with the active highwaters taken from the log and the consistency check run
    on them.

    An end the broker reports a batch short would also end a recovery early: faust stops applying a
    partition's changelog once its offset reaches the highwater, and the rest of that batch would
    wait in its buffer, so the table would hold older values for the keys written last. The active
    highwaters are therefore the logs' last offsets (`ChangelogLog.last_offsets`). faust then builds
    the active offsets (which its changelog reader may still advance with records fetched before the
    rebalance) and checks; the check here runs once the offsets are built, on what was read by then,
    and the app turns faust's own check off (`recovery_consistency_check`), since records read after
    this check exist and are no inconsistency. `changelogs` is set by the app (catch_up_within)."""

    changelogs: ChangelogLog | None = None

    def _changelog_log(self) -> ChangelogLog:
        if self.changelogs is None:
            raise RuntimeError("CatchingUpRecovery.changelogs is not set (see catch_up_within)")
        return self.changelogs

    async def _build_highwaters(self, consumer: Any, tps: set[TP], destination: Any, title: str) -> None:
        await super()._build_highwaters(consumer, tps, destination, title)
        if destination is not self.active_highwaters or not tps:
            return
        ends = await self._changelog_log().last_offsets({tp: destination[tp] for tp in tps})
        longer = {tp: (destination[tp], end) for tp, end in ends.items() if end > destination[tp]}
        if longer:
            log.info("changelog logs end past their reported ends (reported, log): %s",
                     {f"{tp.topic}[{tp.partition}]": figures for tp, figures in longer.items()})
            for tp, (_, end) in longer.items():
                destination[tp] = end  # a Counter: update() would add

    async def _build_offsets(self, consumer: Any, tps: set[TP], destination: Any, title: str) -> None:
        await super()._build_offsets(consumer, tps, destination, title)
        if destination is not self.active_offsets:
            return
        highwaters = self.active_highwaters
        lagging = past_the_end(destination, highwaters, tps)
        if not lagging:
            return
        log.warning("changelog end offsets reported behind what was read, reading the log: %s",
                    {f"{tp.topic}[{tp.partition}]": (destination[tp], highwaters[tp]) for tp in lagging})
        still = await confirm_read(self._changelog_log().read, destination, highwaters, lagging)
        if still:
            tp = min(still)
            log.error("changelog logs end before what was read: %s",
                      {f"{tp.topic}[{tp.partition}]": (destination[tp], highwaters[tp]) for tp in still})
            raise ConsistencyError(E_PERSISTED_OFFSET.format(tp, destination[tp], highwaters[tp]))


class CatchingUpTableManager(TableManager):
    """faust's TableManager with CatchingUpRecovery (faust.App's TableManager setting)."""

    @property
    def recovery(self) -> CatchingUpRecovery:
        if self._recovery is None:
            self._recovery = CatchingUpRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return cast(CatchingUpRecovery, self._recovery)


def catch_up_within(app: faust.App, kafka: KafkaSettings, within_s: float) -> None:
    """Give the app's recovery its changelog reader, each read bounded by within_s (the app was built
    with TableManager=CatchingUpTableManager)."""
    cast(CatchingUpTableManager, app.tables).recovery.changelogs = ChangelogLog(kafka, within_s)
