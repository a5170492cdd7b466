"""A batch as the folds need it: each source partition's records in offset order, once, none missing.

faust's consumer does not always deliver a partition whole: around a rebalance it was seen to drop a
record inside a batch or between two, and to ack and commit it with the rest, and to deliver a
record twice. The folds skip a record below a state's next offset as a redelivery, so a record that
arrives after a later one of its partition would never count, and one that never arrives is lost.

in_order(batch) rules, per partition: the table's next offset (LiveTable.next_offset: the offset
after the last record handled, written with the batch's state) is where the partition goes on.
Records below it were handled and are dropped, as are repeats within the batch; a record past it
means the ones in between were not delivered, and they are read from the broker directly
(gaelp.bus.reader.read_range) and come first. The table's next offset then moves past the batch.
With no next offset yet (a new consumer group), the batch is taken as delivered.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka.structs import ConsumerRecord

from metrics.live_table import LiveTable

logger = logging.getLogger(__name__)

RangeReader = Callable[[str, int, int, int], Awaitable[list[ConsumerRecord]]]
"""read(topic, partition, start, end): the partition's records from offset start up to end."""


async def in_order(batch: Sequence[ConsumerRecord], table: LiveTable[Any], read: RangeReader
                   ) -> list[ConsumerRecord]:
    by_partition: dict[tuple[str, int], dict[int, ConsumerRecord]] = {}
    for record in batch:
        by_partition.setdefault((record.topic, record.partition), {}).setdefault(record.offset, record)
    ordered: list[ConsumerRecord] = []
    for (topic, partition), records in by_partition.items():
        offsets = sorted(records)
        expected = table.next_offset(partition)
        if expected is None:  # a new group: nothing handled before this batch
            expected = offsets[0]
        for offset in offsets:
            if offset < expected:
                continue
            if offset > expected:
                missing = [record for record in await read(topic, partition, expected, offset)
                           if expected <= record.offset < offset]
                logger.warning("records the consumer did not deliver, read from the broker",
                               extra={"topic": topic, "partition": partition, "start": expected,
                                      "end": offset, "read": len(missing)})
                ordered += missing
            ordered.append(records[offset])
            expected = offset + 1
        table.advance(partition, expected)
    return ordered
