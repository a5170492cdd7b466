"""Broker cost per round as the broker's store grows: one record produced (acknowledged), then
fetched by a consumer, as the learner reads one TransitionBatch per rollout round. Printed per
window of rounds: the round's wall time and the broker process's CPU time (utime + stime from
/proc). Between windows, --filler records go to a second topic whose name sorts after the first
one's, one acknowledged produce (one stored batch) each.

The local broker (Tansu 0.6.0, memory storage) keeps each produced batch as one object and, on
every fetch below the high watermark, lists the partition's objects to find the offsets
(tansu-storage dynostore.rs, `fetch`); the in-memory object store answers a prefix listing by
walking its sorted keys from the prefix on. So a fetch's cost grows with the batches stored, and
the filler topic shows whether batches of other topics count too.

    .venv/bin/python -m benchmarks.broker_fetch_growth [--rounds 4000] [--window 500] [--filler 0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from gaelp.bus.local_broker import LocalBroker

TOPIC = "growth-measured"
FILLER_TOPIC = "growth-other"  # sorts after TOPIC
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def child_pids() -> list[int]:
    """Processes this one started (the broker is the only one)."""
    pids: list[int] = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        pids += [int(pid) for pid in (task / "children").read_text().split()]
    return pids


def cpu_seconds(pid: int) -> float:
    # Fields after the command name (which may hold spaces): utime and stime are fields 14 and 15.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def measure(bootstrap: str, broker_pid: int, rounds: int, window: int, size: int, filler: int
                  ) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0)
    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id="growth",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                fetch_max_wait_ms=5)
    await producer.start()
    await consumer.start()
    payload = os.urandom(size)
    try:
        await producer.send_and_wait(TOPIC, payload)  # creates the topic
        await consumer.getmany(timeout_ms=10_000)
        print(f"{'rounds':>13} {'other topic':>11} {'round ms':>9} {'broker CPU ms/round':>20}", flush=True)
        other = 0
        for start in range(0, rounds, window):
            cpu_before, wall_before = cpu_seconds(broker_pid), time.perf_counter()
            for _ in range(window):
                await producer.send_and_wait(TOPIC, payload)
                received = 0
                while received == 0:
                    batches = await consumer.getmany(timeout_ms=1_000)
                    received = sum(len(records) for records in batches.values())
            wall = time.perf_counter() - wall_before
            cpu = cpu_seconds(broker_pid) - cpu_before
            print(f"{start:>6}-{start + window:<6} {other:>11} {1e3 * wall / window:>9.1f}"
                  f" {1e3 * cpu / window:>20.1f}", flush=True)
            for _ in range(filler):
                await producer.send_and_wait(FILLER_TOPIC, payload)
            other += filler
    finally:
        await consumer.stop()
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=4000)
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--filler", type=int, default=0, help="records to the other topic after each window")
    parser.add_argument("--bytes", type=int, default=1024, help="record size")
    args = parser.parse_args()
    with LocalBroker() as broker:
        (broker_pid,) = child_pids()
        asyncio.run(measure(broker.bootstrap, broker_pid, args.rounds, args.window, args.bytes, args.filler))


if __name__ == "__main__":
    main()
