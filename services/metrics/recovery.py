"""faust's table recovery, made to wait for a partition's end offset to cover what was already read.

At every rebalance faust asks the broker for each changelog partition's end (its "highwater", the
last offset) and stops the worker with ConsistencyError when the offset it has already read for a
partition it keeps lies past that end. Tansu (the local broker) hands a fetch a record whose produce
is still in flight, and counts it in ListOffsets only once the produce is acknowledged: with a
producer writing, the end offset lagged what a consumer had read by 1 to 3 records for up to 10 ms.
A member that read such a record just before a rebalance stopped with ConsistencyError ("2 > 1").

A record that was read exists, so the end offset is bound to reach it: `catch_up` asks again, for
at most `metrics.highwater_catch_up_s`, once the offsets read are known, and the check runs then.
An end offset still short after that is a real inconsistency (a changelog topic recreated under the
worker) and stops the worker as faust's own check did. Apache Kafka serves consumers only
acknowledged records, so there nothing waits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any, cast

import faust
from faust.exceptions import ConsistencyError
from faust.tables import TableManager
from faust.tables.recovery import E_PERSISTED_OFFSET, Recovery
from faust.types import TP

log = logging.getLogger(__name__)

EndOffsets = Callable[..., Awaitable[Mapping[TP, int | None]]]

POLL_S = 0.05


def past_the_end(read: Mapping[TP, int | None], highwaters: Mapping[TP, int], tps: Iterable[TP]) -> set[TP]:
    """The partitions whose offset already read lies past their highwater, by faust's rule (an offset
    or highwater of 0 passes: faust's check reads both as numbers only when they are non-zero)."""
    return {tp for tp in tps
            if (offset := read.get(tp)) and (end := highwaters.get(tp)) and offset > end}


async def catch_up(
    end_offsets: EndOffsets,
    read: Mapping[TP, int | None],
    highwaters: MutableMapping[TP, int],
    tps: Iterable[TP],
    within_s: float,
) -> set[TP]:
    """Re-ask end_offsets(*tps) for the partitions read past their highwater until it covers what was
    read or within_s passes; highwaters holds faust's figure (end offset - 1, or -1 when unknown).
    Returns the partitions still past the end."""
    behind = past_the_end(read, highwaters, tps)
    deadline = time.monotonic() + within_s
    while behind and time.monotonic() < deadline:
        await asyncio.sleep(POLL_S)
        for tp, end in (await end_offsets(*behind)).items():
            highwaters[tp] = end - 1 if end is not None else -1
        behind = past_the_end(read, highwaters, behind)
    return behind


class CatchingUpRecovery(Recovery):
    """faust's Recovery whose consistency check runs after a catch-up of the lagging highwaters.

    faust builds the active highwaters, then the active offsets (which its changelog reader may still
    advance with records fetched before the rebalance), then checks. The check here runs once the
    offsets are built, on what was read by then, so a record read a moment before the end covered it
    is waited for; the app turns faust's own check off (`recovery_consistency_check`), since records
    read after this check exist and are no inconsistency."""

    catch_up_s: float = 5.0

    async def _build_offsets(self, consumer: Any, tps: set[TP], destination: Any, title: str) -> None:
        await super()._build_offsets(consumer, tps, destination, title)
        if destination is not self.active_offsets:
            return
        highwaters = self.active_highwaters
        lagging = past_the_end(destination, highwaters, tps)
        if lagging:
            log.warning("changelog end offsets behind what was read, asking again: %s",
                        {f"{tp.topic}[{tp.partition}]": (destination[tp], highwaters[tp]) for tp in lagging})
            lagging = await catch_up(consumer.highwaters, destination, highwaters, lagging, self.catch_up_s)
        if lagging:
            tp = min(lagging)
            log.error("changelog end offsets still behind after %.1f s: %s", self.catch_up_s,
                      {f"{tp.topic}[{tp.partition}]": (destination[tp], highwaters[tp]) for tp in lagging})
            raise ConsistencyError(E_PERSISTED_OFFSET.format(tp, destination[tp], highwaters[tp]))


class CatchingUpTableManager(TableManager):
    """faust's TableManager with CatchingUpRecovery (faust.App's TableManager setting)."""

    @property
    def recovery(self) -> CatchingUpRecovery:
        if self._recovery is None:
            self._recovery = CatchingUpRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return cast(CatchingUpRecovery, self._recovery)


def catch_up_within(app: faust.App, within_s: float) -> None:
    """Bound the app's catch-up (the app was built with TableManager=CatchingUpTableManager)."""
    cast(CatchingUpTableManager, app.tables).recovery.catch_up_s = within_s
