"""Metrics service throughput over the real broker, next to the rate a default run produces episodes.

    python -m benchmarks.metrics_throughput --out FILE.json [--episodes 100000] [--demo-max-env-steps N]

produced_per_s is read from a default run in the same benchmark: the embedded job
(`python -m gaelp.embedded`, the default configs/development.yaml, bounded by
--demo-max-env-steps, which only shortens the curriculum) trains against this benchmark's local
broker; the rate is its episodes divided by the span of their broker timestamps, first to last
(steady production, without start-up). Its episodes are then copied under fresh run ids until the
topic holds --episodes episodes over --runs runs (real episode contents, not synthetic ones).

episodes_per_s: a fresh metrics service (`python -m metrics`, the same preset, its own consumer
group) consumes the whole topic from the start; the rate is the episodes counted between the first
and the last GetRunSummary poll that saw a change, over that time (start-up and table recovery are
outside it). Every episode goes through validation and the state fold, and each run gets its
assessment once per batch, as in a run. episodes_per_cpu_s divides the same count by the CPU time
the service process used meanwhile, a figure that holds on a shared machine where the service gets
only part of a core; load_average is the machine's 1-minute load at the start and end of it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from gaelp.bus import EPISODES, BusProducer
from gaelp.bus.local_broker import LocalBroker
from gaelp.bus.reader import read_topic
from gaelp.config import load_settings
from gaelp.embedded.processes import ServiceProcess
from gaelp.v1 import events_pb2, metrics_pb2, metrics_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "development.yaml"


def run_default_demo(bootstrap: str, work_dir: Path, max_env_steps: int) -> bool:
    """Run the embedded job; True when its run graduated. A run that ended without graduating (exit 1
    with its report written: a shortened curriculum seldom graduates) still produced its episodes;
    one that left no report failed."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GAELP_")}
    env.update({"GAELP_KAFKA_BOOTSTRAP": bootstrap, "GAELP_STORAGE_DATA_DIR": str(work_dir / "demo")})
    log = work_dir / "demo.log"
    done = subprocess.run(
        [sys.executable, "-m", "gaelp.embedded", "--max-env-steps", str(max_env_steps)],
        cwd=REPO_ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    if done.returncode == 0:
        return True
    if done.returncode == 1 and any((work_dir / "demo" / "runs").glob("*/report.json")):
        return False
    raise RuntimeError(f"the default run failed (exit {done.returncode}):\n{log.read_text()[-3000:]}")


async def demo_episodes(bootstrap: str) -> tuple[list[events_pb2.EpisodeSummary], float]:
    records = await read_topic(bootstrap, EPISODES.name, timeout_s=600)
    if len(records) < 2:
        raise RuntimeError(f"the default run produced {len(records)} episodes")
    stamps = sorted(record.timestamp for record in records)
    span_s = (stamps[-1] - stamps[0]) / 1000
    return [EPISODES.decode(record.value) for record in records], len(records) / span_s


async def fill_topic(bootstrap: str, episodes: list[events_pb2.EpisodeSummary], total: int,
                     runs: int) -> list[str]:
    """Copy the run's episodes under `runs` fresh run ids until the topic holds `total` more."""
    settings = load_settings(kafka={"bootstrap": bootstrap, "enable_idempotence": False, "acks": "1"})
    run_ids = [f"bench-{index}" for index in range(runs)]
    per_run = total // runs
    async with BusProducer(settings.kafka) as producer:
        for run_id in run_ids:
            pending = []
            for index in range(per_run):
                copy = events_pb2.EpisodeSummary()
                copy.CopyFrom(episodes[index % len(episodes)])
                copy.run_id, copy.episode_id = run_id, f"{run_id}-{index}"
                pending.append(await producer.enqueue(EPISODES, run_id, copy))
                if len(pending) >= 5000:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
    return run_ids


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def counted(stub: metrics_pb2_grpc.MetricsStub, run_ids: list[str]) -> int:
    return sum(stub.GetRunSummary(metrics_pb2.GetRunSummaryRequest(run_id=r), timeout=30).episodes
               for r in run_ids)


def measure_metrics(bootstrap: str, work_dir: Path, run_ids: list[str], expected: int,
                    timeout_s: float) -> dict[str, Any]:
    env = {
        "GAELP_CONFIG": str(DEFAULT_CONFIG),
        "GAELP_KAFKA_BOOTSTRAP": bootstrap,
        "GAELP_STORAGE_DATA_DIR": str(work_dir / "metrics"),
        "GAELP_METRICS_GROUP_ID": f"metrics-bench-{os.getpid()}",
        "GAELP_METRICS_HTTP_PORT": "0",
    }
    service = ServiceProcess("metrics", env, work_dir / "logs").start(wait_s=180)
    assert service.process is not None
    pid = service.process.pid
    try:
        with grpc.insecure_channel(service.target) as channel:
            stub = metrics_pb2_grpc.MetricsStub(channel)
            first: tuple[float, int, float] | None = None
            load_at_first = 0.0
            last: tuple[float, int, float] = (time.monotonic(), 0, 0.0)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                count, now, cpu = counted(stub, run_ids), time.monotonic(), cpu_seconds(pid)
                if count > last[1]:
                    if first is None:
                        first = (now, count, cpu)
                        load_at_first = os.getloadavg()[0]
                    last = (now, count, cpu)
                if count >= expected:
                    break
                time.sleep(0.25)
        if first is None or last[1] < expected:
            raise RuntimeError(f"metrics counted {last[1]} of {expected} episodes in {timeout_s}s")
        elapsed, cpu = last[0] - first[0], last[2] - first[2]
        measured = last[1] - first[1]
        return {"episodes_counted": last[1], "measured_episodes": measured,
                "measured_s": round(elapsed, 3),
                "episodes_per_s": round(measured / elapsed, 1) if elapsed > 0 else None,
                # On a shared machine the service may get a fraction of a core: per CPU second too.
                "metrics_cpu_s": round(cpu, 2),
                "episodes_per_cpu_s": round(measured / cpu, 1) if cpu > 0 else None,
                "load_average": [round(load_at_first, 2), round(os.getloadavg()[0], 2)]}
    finally:
        service.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--episodes", type=int, default=100_000, help="episodes the metrics service reads")
    parser.add_argument("--runs", type=int, default=4, help="runs the copied episodes are spread over")
    parser.add_argument("--demo-max-env-steps", type=int, default=300_000,
                        help="length of the default run that gives produced_per_s and the episodes")
    parser.add_argument("--timeout-s", type=float, default=1200.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="metrics-bench-") as tmp:
        work_dir = Path(tmp)
        with LocalBroker(log_path=work_dir / "broker.log") as broker:
            demo_graduated = run_default_demo(broker.bootstrap, work_dir, args.demo_max_env_steps)
            episodes, produced_per_s = asyncio.run(demo_episodes(broker.bootstrap))
            run_ids = asyncio.run(fill_topic(broker.bootstrap, episodes, args.episodes, args.runs))
            expected = (args.episodes // args.runs) * args.runs
            figures = measure_metrics(broker.bootstrap, work_dir, run_ids, expected, args.timeout_s)
    result = {
        "episodes_per_s": figures["episodes_per_s"],
        "produced_per_s": round(produced_per_s, 1),
        "ratio": round(figures["episodes_per_s"] / produced_per_s, 2),
        "demo_episodes": len(episodes),
        "demo_max_env_steps": args.demo_max_env_steps,
        "demo_graduated": demo_graduated,
        **{key: value for key, value in figures.items() if key != "episodes_per_s"},
        "runs": args.runs,
        "machine": f"{os.cpu_count()} CPUs (shared), no GPU",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
