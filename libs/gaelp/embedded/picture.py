"""The embedded run's picture: learning curves and sandbox spend over time, one HTML file.

`write_picture` writes `report.html` into the run directory, with `plotly.min.js` (from the plotly
wheel) beside it so that the file opens offline. Its figures come from the services the run used:
- learning curves: every episode of the run from the metrics service's dashboard API, normalized
  reward and ROAS as a trailing mean over `SMOOTHING` episodes, one line per phase, x the run-wide
  episode number;
- spend over time: per sandbox campaign, the spend the ledger committed, cumulative over platform
  hours (the end of each decision window), and each window's reservation (the most the platform
  may spend in it), from the orchestrator's money report. Spend is the sandbox's (a simulated ad
  platform), not real money.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gaelp.v1 import common_pb2

SMOOTHING = 100  # episodes in the trailing mean
MAX_POINTS = 2000  # per line: a longer curve is thinned evenly (the mean is taken first)
PAGE = 50_000  # the dashboard API's largest page
HTTP_TIMEOUT_S = 30.0


def episode_columns(dashboard_url: str, run_id: str) -> dict[str, list[Any]]:
    """Every episode of the run the metrics service holds, as columns."""
    columns: dict[str, list[Any]] = {}
    start = 0
    while True:
        url = f"{dashboard_url.rstrip('/')}/api/runs/{run_id}/episodes?start={start}&limit={PAGE}"
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as answer:
            page = json.load(answer)
        for name, values in page["columns"].items():
            columns.setdefault(name, []).extend(values)
        start = page["end"]
        if start >= page["total"]:
            return columns


def trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last `window` values at each point (fewer at the start)."""
    sums = np.cumsum(np.insert(values.astype(float), 0, 0.0))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return np.asarray((sums[ends] - sums[starts]) / (ends - starts))


def _thinned(x: np.ndarray, y: np.ndarray) -> tuple[list[float], list[float]]:
    if len(x) > MAX_POINTS:
        keep = np.linspace(0, len(x) - 1, MAX_POINTS).round().astype(int)
        x, y = x[keep], y[keep]
    return x.tolist(), y.tolist()


def spend_series(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Per campaign that went live: window end hours with the cumulative committed spend, window start
    hours with each window's reservation (held from its start)."""
    series = []
    for campaign in document.get("campaigns", []):
        windows = sorted((w for w in campaign["windows"] if w["granted"]), key=lambda w: w["end_hour"])
        if not windows or not campaign["campaign_id"]:
            continue
        series.append({
            "name": f"phase {campaign['phase']} #{campaign['index']} {campaign['product']}",
            "hours": [w["end_hour"] for w in windows],
            "committed": np.cumsum([w["committed"] or 0.0 for w in windows]).tolist(),
            "starts": [w["start_hour"] for w in windows],
            "reserved": [w["amount"] for w in windows],
        })
    return series


def figure(run_id: str, episodes: dict[str, list[Any]], spend: list[dict[str, Any]]) -> go.Figure:
    fig = make_subplots(rows=3, cols=1, vertical_spacing=0.08, subplot_titles=(
        f"normalized reward (trailing mean of {SMOOTHING} episodes)", "ROAS (same smoothing)",
        "sandbox spend over platform hours: committed, cumulative (solid); each window's reservation"
        " (dotted)"))
    phases = np.asarray(episodes.get("phase", []), dtype=int)
    numbers = np.asarray(episodes.get("episode", []), dtype=float)
    for row, name in ((1, "normalized_reward"), (2, "roas")):
        values = np.asarray(episodes.get(name, []), dtype=float)
        for phase in sorted(set(phases.tolist())):
            chosen = phases == phase
            x, y = _thinned(numbers[chosen], trailing_mean(values[chosen], SMOOTHING))
            label = common_pb2.Phase.Name(phase).removeprefix("PHASE_").lower()  # type: ignore[arg-type]
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=f"{name} {label}",
                                     legendgroup=label), row=row, col=1)
    for campaign in spend:
        line = go.Scatter(x=campaign["hours"], y=campaign["committed"], mode="lines+markers",
                          name=f"committed {campaign['name']}")
        fig.add_trace(line, row=3, col=1)
        fig.add_trace(go.Scatter(x=campaign["starts"], y=campaign["reserved"], mode="lines",
                                 line={"dash": "dot", "shape": "hv"}, name=f"reserved {campaign['name']}"),
                      row=3, col=1)
    fig.update_xaxes(title_text="episode", row=1, col=1)
    fig.update_xaxes(title_text="episode", row=2, col=1)
    fig.update_xaxes(title_text="sandbox platform hour", row=3, col=1)
    fig.update_yaxes(title_text="USD (sandbox)", row=3, col=1)
    fig.update_layout(title=f"GAELP run {run_id}", height=1100, template="plotly_white")
    return fig


def write_picture(run_dir: Path, dashboard_url: str, run_id: str, money_document: dict[str, Any]) -> Path:
    """Write run_dir/report.html; `money_document` is the orchestrator's money report of the run
    (GetMoneyReport; empty when the run reached no money phase: no spend panel lines)."""
    path = run_dir / "report.html"
    episodes = episode_columns(dashboard_url, run_id)
    figure(run_id, episodes, spend_series(money_document)).write_html(path, include_plotlyjs="directory")
    return path
