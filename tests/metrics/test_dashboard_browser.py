"""The dashboard in headless Chromium: no console errors, and charts fill with data sent during the test."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import ConsoleMessage, async_playwright

from gaelp.bus import EPISODES, LEARNER_METRICS, VIOLATIONS, BusProducer
from gaelp.config import load_settings
from gaelp.v1 import common_pb2, events_pb2

CHROMIUM = "/usr/bin/chromium"  # Debian's package: apt-get install -y chromium
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
EPISODE_COUNT = 40


@pytest.mark.timeout(120)
async def test_dashboard_shows_live_data_without_console_errors(
    metrics_service: Any, kafka_bootstrap: str, unique_name: str
) -> None:
    assert shutil.which(CHROMIUM), "install Debian's chromium: apt-get install -y chromium"
    run_id = f"dash-{unique_name}"
    settings = load_settings(kafka={"bootstrap": kafka_bootstrap, "enable_idempotence": False, "acks": "1"})
    problems: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1500})

            def on_console(message: ConsoleMessage) -> None:
                if message.type == "error":
                    problems.append(message.text)

            page.on("console", on_console)
            page.on("pageerror", lambda error: problems.append(str(error)))
            await page.goto(f"http://127.0.0.1:{metrics_service.http_port}/?run={run_id}")
            await page.wait_for_selector("#reward-chart")
            # Nothing is drawn for this run before its data arrives.
            assert await page.locator("#reward-chart polyline").count() == 0

            async with BusProducer(settings.kafka) as producer:
                for index in range(1, EPISODE_COUNT + 1):
                    await producer.send(EPISODES, run_id, events_pb2.EpisodeSummary(
                        run_id=run_id, episode_id=f"{run_id}-{index}", phase=common_pb2.PHASE_SIMULATION,
                        task="one-persona", normalized_reward=min(0.2 + index * 0.02, 1.0),
                        success=index > 10, roas=1.0 + index * 0.05, ctr=0.02, spend=8.0, budget=10.0,
                        revenue=8.0 * (1.0 + index * 0.05), clicks=20, conversions=2,
                        curriculum_level=1, curriculum_levels=3,
                        reference_rewards={"random": 0.1, "heuristic": 0.45, "oracle": 0.95},
                    ))
                for version in range(1, 6):
                    await producer.send(LEARNER_METRICS, run_id, events_pb2.LearnerStats(
                        run_id=run_id, policy_version=version, algorithm="ppo",
                        losses={"policy": 1.0 / version, "value": 2.0 / version}, entropy=1.5 - 0.1 * version,
                        policy_lag_mean=0.5, policy_lag_max=2,
                    ))
                await producer.send(VIOLATIONS, "campaign-7", events_pb2.Violation(
                    violation_id="v7", campaign_id="campaign-7", run_id=run_id, rule="brand_safety",
                    severity=events_pb2.SEVERITY_WARNING, amount=0.0, phase=common_pb2.PHASE_SIMULATION,
                    action_taken="refused",
                ))

            reward_line = page.locator("#reward-chart polyline[data-label='SIMULATION one-persona']")
            await reward_line.wait_for(timeout=20_000)
            deadline = time.monotonic() + 20
            while (await reward_line.get_attribute("data-points")) != str(EPISODE_COUNT):
                assert time.monotonic() < deadline, await reward_line.get_attribute("data-points")
                await page.wait_for_timeout(200)
            assert await page.locator("#reward-chart line.reference").count() == 3
            await page.locator("#learner-chart polyline[data-label='entropy']").wait_for(timeout=20_000)
            await page.get_by_text("WARNING brand_safety campaign campaign-7").wait_for(timeout=20_000)
            assert "40 episodes" in await page.locator("#timeline").inner_text()
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "metrics-dashboard.png"), full_page=True)
        finally:
            await browser.close()
    assert problems == []
