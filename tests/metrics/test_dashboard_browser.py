"""The dashboard in headless Chromium: no console errors, plotly charts fill with data sent during the test.

Checked in the page: every episode of the run is drawn (more than the tables' 100 curve points), one
chart per learner statistic, the smoothing slider changes the smoothed lines the way TensorBoard's
does, the run's current phase and task are shown; and the paged episodes API refuses bad bounds.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import ConsoleMessage, Page, async_playwright

from gaelp.bus import EPISODES, LEARNER_METRICS, VIOLATIONS, BusProducer
from gaelp.config import load_settings
from gaelp.v1 import common_pb2, events_pb2

CHROMIUM = "/usr/bin/chromium"  # Debian's package: apt-get install -y chromium
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TASKS = {"one-persona": 100, "two-personas": 50}  # episodes per task, in this order
EPISODE_COUNT = sum(TASKS.values())
UPDATES = 12
# One chart per loss (two here) and per statistic: entropy, KL, grad norm, samples/s, policy lag.
LEARNER_CHARTS = ["loss-policy", "loss-value", "entropy", "approx_kl", "grad_norm", "samples_per_second",
                  "policy_lag"]


def _episodes() -> list[events_pb2.EpisodeSummary]:
    episodes = []
    index = 0
    for level, (task, count) in enumerate(TASKS.items(), start=1):
        for _ in range(count):
            index += 1
            episodes.append(events_pb2.EpisodeSummary(
                run_id="", episode_id=f"e{index}", phase=common_pb2.PHASE_SIMULATION, task=task,
                normalized_reward=min(0.2 + (index % 40) * 0.02, 1.0), success=index % 3 > 0,
                roas=1.0 + (index % 25) * 0.05, ctr=0.02, spend=8.0, budget=10.0,
                revenue=8.0 * (1.0 + (index % 25) * 0.05), clicks=20, conversions=2,
                curriculum_level=level, curriculum_levels=3,
                reference_rewards={"random": 0.1, "heuristic": 0.45, "oracle": 0.95},
            ))
    return episodes


async def _chart_traces(page: Page, selector: str) -> list[dict[str, Any]]:
    """The traces plotly holds for a chart: name, meta and y values."""
    found: list[dict[str, Any]] = await page.eval_on_selector(
        selector,
        "div => (div.data || []).map(t => ({name: t.name, meta: t.meta || {}, y: Array.from(t.y)}))")
    return found


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, None


@pytest.mark.timeout(150)
async def test_dashboard_shows_live_data_without_console_errors(
    metrics_service: Any, kafka_bootstrap: str, unique_name: str
) -> None:
    assert shutil.which(CHROMIUM), "install Debian's chromium: apt-get install -y chromium"
    run_id = f"dash-{unique_name}"
    base = f"http://127.0.0.1:{metrics_service.http_port}"
    settings = load_settings(kafka={"bootstrap": kafka_bootstrap, "enable_idempotence": False, "acks": "1"})
    problems: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1800})

            def on_console(message: ConsoleMessage) -> None:
                if message.type == "error":
                    problems.append(message.text)

            page.on("console", on_console)
            page.on("pageerror", lambda error: problems.append(str(error)))
            await page.goto(f"{base}/?run={run_id}")
            await page.wait_for_selector("#reward-chart")
            assert await page.evaluate("typeof Plotly") == "object", "plotly.js served by the service"
            # Nothing is drawn for this run before its data arrives.
            assert await page.locator("#reward-chart .js-line").count() == 0

            async with BusProducer(settings.kafka) as producer:
                for episode in _episodes():
                    episode.run_id, episode.episode_id = run_id, f"{run_id}-{episode.episode_id}"
                    await producer.send(EPISODES, run_id, episode)
                for version in range(1, UPDATES + 1):
                    await producer.send(LEARNER_METRICS, run_id, events_pb2.LearnerStats(
                        run_id=run_id, policy_version=version, algorithm="ppo",
                        losses={"policy": 1.0 / version, "value": 200.0 / version},
                        entropy=1.5 - 0.1 * version + (0.05 if version % 2 else -0.05),
                        approx_kl=0.01 * version, grad_norm=388.0 / version,
                        samples_per_second=900.0 + version,
                        policy_lag_mean=0.5, policy_lag_max=2,
                    ))
                await producer.send(VIOLATIONS, "campaign-7", events_pb2.Violation(
                    violation_id="v7", campaign_id="campaign-7", run_id=run_id, rule="brand_safety",
                    severity=events_pb2.SEVERITY_WARNING, amount=0.0, phase=common_pb2.PHASE_SIMULATION,
                    action_taken="refused",
                ))

            # Every episode is drawn, per task, with the task's three reference lines.
            chart = page.locator("#reward-chart")
            deadline = time.monotonic() + 30
            while (await chart.get_attribute("data-count")) != str(EPISODE_COUNT):
                assert time.monotonic() < deadline, await chart.get_attribute("data-count")
                await page.wait_for_timeout(200)
            traces = await _chart_traces(page, "#reward-chart")
            smoothed = {t["name"]: t for t in traces if t["meta"].get("raw") is False}
            assert {name: t["meta"]["count"] for name, t in smoothed.items()} == TASKS
            assert len([t for t in traces if "reference" in t["meta"]]) == 3 * len(TASKS)
            assert await page.locator("#reward-chart .scatterlayer .js-line").count() == len(traces)
            assert await page.locator("#roas-chart .scatterlayer .js-line").count() == 2 * len(TASKS)

            # One chart per learner statistic, each with its own axis and its lines drawn.
            # (attached, not visible: a flat line has an empty bounding box)
            await page.locator("#learner-charts [data-stat='policy_lag'] .js-line").first.wait_for(
                state="attached", timeout=20_000)
            deadline = time.monotonic() + 20
            while (await page.locator("#learner-grad_norm").get_attribute("data-count")) != str(UPDATES):
                assert time.monotonic() < deadline
                await page.wait_for_timeout(200)
            charts = await page.locator("#learner-charts div.learner-chart").evaluate_all(
                "divs => divs.map(d => d.dataset.stat)")
            assert charts == LEARNER_CHARTS
            for stat in LEARNER_CHARTS:
                chart_of = f"#learner-charts div[data-stat='{stat}']"
                assert await page.locator(f"{chart_of} .yaxislayer-above").count() == 1
                assert await page.locator(f"{chart_of} .js-line").count() >= 2

            # Smoothing: weight 0 draws the raw values; a heavy weight flattens the zigzag of entropy.
            async def entropy_lines(weight: str) -> tuple[list[float], list[float]]:
                await page.locator("#smoothing").fill(weight)
                lines = await _chart_traces(page, "#learner-entropy")
                raw = next(t["y"] for t in lines if t["meta"]["raw"])
                smooth = next(t["y"] for t in lines if not t["meta"]["raw"])
                return raw, smooth

            raw, smooth = await entropy_lines("0")
            assert smooth == pytest.approx(raw)
            raw, smooth = await entropy_lines("0.9")
            assert smooth[0] == pytest.approx(raw[0])  # debiased: the first point is not pulled to 0
            assert max(abs(a - b) for a, b in zip(raw[1:], smooth[1:], strict=True)) > 0.05

            # The current phase, task and level, and the rest of the page.
            now = page.locator("#phase-now")
            await page.get_by_text("SIMULATION, task two-personas, level 2 of 3").wait_for(timeout=10_000)
            assert await now.get_attribute("data-phase") == "PHASE_SIMULATION"
            await page.get_by_text("WARNING brand_safety campaign campaign-7").wait_for(timeout=20_000)
            assert f"{EPISODE_COUNT} episodes" in await page.locator("#timeline").inner_text()
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "metrics-dashboard.png"), full_page=True)
        finally:
            await browser.close()
    assert problems == []

    # The paged API behind the charts: every episode, page by page, in order; bad bounds refused.
    status, first = _get(f"{base}/api/runs/{run_id}/episodes?start=0&limit=70")
    assert status == 200 and first["total"] == EPISODE_COUNT and first["end"] == 70
    status, rest = _get(f"{base}/api/runs/{run_id}/episodes?start=70&limit=1000")
    assert status == 200 and rest["end"] == EPISODE_COUNT
    assert first["columns"]["episode"] + rest["columns"]["episode"] == list(range(1, EPISODE_COUNT + 1))
    assert [first["tasks"][i] for i in rest["columns"]["task"][-1:]] == ["two-personas"]
    for query in ("start=-1", "limit=0", "limit=many", f"limit={10**6}"):
        assert _get(f"{base}/api/runs/{run_id}/episodes?{query}")[0] == 400, query
    assert _get(f"{base}/api/runs/no-such-run/episodes")[0] == 404
