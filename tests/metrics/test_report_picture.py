"""The embedded run's picture file from a real metrics service: every episode of the run in the
learning curves (trailing mean by phase), the money panel from a money report of the orchestrator's
shape (its own record types), plotly's bundle beside the HTML so that it opens offline."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from gaelp.bus import EPISODES, BusProducer
from gaelp.config import load_settings
from gaelp.embedded.picture import (
    SMOOTHING,
    episode_columns,
    figure,
    spend_series,
    trailing_mean,
    write_picture,
)
from gaelp.v1 import common_pb2, events_pb2
from orchestrator.money.records import CampaignRecord, MoneyRunDocument, WindowRecord

SIM, HIST = common_pb2.PHASE_SIMULATION, common_pb2.PHASE_HISTORICAL


def test_trailing_mean_averages_the_last_window_values() -> None:
    assert trailing_mean(np.array([1.0, 3.0, 5.0, 7.0]), 2).tolist() == [1.0, 2.0, 4.0, 6.0]


def _money_document(run_id: str) -> dict[str, Any]:
    window = {"day": 0, "bid": 1.0, "daily_budget": 10.0}
    live = CampaignRecord(index=0, phase=3, ledger_campaign="l", product="shoes", campaign_id="c-1", windows=[
        WindowRecord(key="k0", granted=True, start_hour=0, end_hour=6, amount=5.0, committed=2.5, **window),
        WindowRecord(key="k1", granted=True, start_hour=6, end_hour=12, amount=5.0, committed=1.5, **window),
        WindowRecord(key="k2", granted=False, start_hour=12, end_hour=18, amount=5.0, **window),
    ])
    refused = CampaignRecord(index=1, phase=3, ledger_campaign="l", product="hats", status="refused")
    return MoneyRunDocument(run_id=run_id, campaigns=[live, refused]).model_dump(mode="json")


async def _produce(bootstrap: str, run_id: str, rewards: list[float]) -> None:
    settings = load_settings(kafka={"bootstrap": bootstrap, "enable_idempotence": False, "acks": "1"})
    async with BusProducer(settings.kafka) as producer:
        for index, reward in enumerate(rewards):
            await producer.send(EPISODES, run_id, events_pb2.EpisodeSummary(
                run_id=run_id, episode_id=f"e{index}", phase=SIM if index < 250 else HIST, task="t",
                normalized_reward=reward, roas=2.0, success=True, spend=1.0, budget=2.0, revenue=2.0))


def test_the_picture_draws_every_episode_by_phase_and_the_spend_of_live_campaigns(
        metrics_service: Any, kafka_bootstrap: str, tmp_path: Path, unique_name: str) -> None:
    run_id = f"pic-{unique_name}"
    rewards = [0.01 * (i % 50) for i in range(300)]
    asyncio.run(_produce(kafka_bootstrap, run_id, rewards))
    base = f"http://127.0.0.1:{metrics_service.http_port}"
    deadline = time.monotonic() + 60
    while True:  # the service's history reads the topic on its own
        try:
            with urllib.request.urlopen(f"{base}/api/runs/{run_id}/episodes?limit=1", timeout=10) as answer:
                if json.load(answer)["total"] == len(rewards):
                    break
        except OSError:
            pass
        assert time.monotonic() < deadline, "the metrics service never held the run's episodes"
        time.sleep(0.3)

    money = _money_document(run_id)
    path = write_picture(tmp_path, base, run_id, money)
    assert path == tmp_path / "report.html" and (tmp_path / "plotly.min.js").stat().st_size > 1_000_000
    assert run_id in path.read_text()

    spend = spend_series(money)
    assert spend == [{"name": "phase 3 #0 shoes", "hours": [6, 12], "committed": [2.5, 4.0],
                      "starts": [0, 6], "reserved": [5.0, 5.0]}]
    drawn = figure(run_id, episode_columns(base, run_id), spend)
    lines = {trace.name: trace for trace in drawn.data}
    simulation, historical = lines["normalized_reward simulation"], lines["normalized_reward historical"]
    assert len(simulation.x) == 250 and len(historical.x) == 50  # every episode, split by phase
    assert simulation.y[-1] == np.mean(rewards[250 - SMOOTHING:250])
    assert list(historical.x) == list(range(251, 301))  # run-wide episode numbers
    assert list(lines["committed phase 3 #0 shoes"].y) == [2.5, 4.0]
