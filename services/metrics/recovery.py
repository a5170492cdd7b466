"""faust's table recovery, with a changelog's end taken from the log itself where the broker's lags.

At every rebalance faust asks the broker for each changelog partition's end (its "highwater", the
last offset) and stops the worker with ConsistencyError when the offset it has already read for a
partition it keeps lies past that end. Tansu (the local broker) reports a partition's end as the
first offset of its last record batch + 1, not its last offset + 1: after one record and then a
batch of three (offsets 1-3), ListOffsets said 2 while a fetch returned offsets 0-3. faust's
producer writes a changelog's records in batches, so a member that had read a whole batch during
one rebalance's recovery stopped at the next with ConsistencyError ("2 > 1"). Tansu also hands a
fetch a record whose produce is still in flight and counts it only once acknowledged.

Where the offset read lies past the reported end, `confirm_read` reads the partition from the
reported end up to that offset, for at most `metrics.highwater_catch_up_s`: records that are there
(or arrive within it) make the last of them the end; a log still short after that is a real
inconsistency (a changelog topic recreated under the worker) and stops the worker as faust's own
check did. Apache Kafka reports the last offset + 1 and serves only acknowledged records, so there
no partition is read past its end and nothing is read again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, cast

import faust
from faust.exceptions import ConsistencyError
from faust.tables import TableManager
from faust.tables.recovery import E_PERSISTED_OFFSET, Recovery
from faust.types import TP

from metrics.delivery import RangeReader

log = logging.getLogger(__name__)

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
    """faust's Recovery whose consistency check runs on highwaters confirmed from the log.

    faust builds the active highwaters, then the active offsets (which its changelog reader may still
    advance with records fetched before the rebalance), then checks. The check here runs once the
    offsets are built, on what was read by then; the app turns faust's own check off
    (`recovery_consistency_check`), since records read after this check exist and are no
    inconsistency. `read_log` is set by the app (faust_app), with the bound of the reads."""

    read_log: RangeReader | None = None

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
        if self.read_log is None:
            raise RuntimeError("CatchingUpRecovery.read_log is not set (see catch_up_within)")
        still = await confirm_read(self.read_log, destination, highwaters, lagging)
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


def catch_up_within(app: faust.App, read_log: RangeReader) -> None:
    """Give the app's recovery its log reader (the app was built with TableManager=
    CatchingUpTableManager); read_log bounds its own reads."""
    cast(CatchingUpTableManager, app.tables).recovery.read_log = read_log
