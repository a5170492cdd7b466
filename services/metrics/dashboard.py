"""The HTTP dashboard: a static page that polls a JSON API built from the same tables as gRPC.

Charts are drawn by plotly.js, served from the `plotly` wheel's own bundled build (no CDN: the page
works offline). Besides the run view, two paged endpoints return every episode and every learner
update of a run as columns (metrics.history), so the page fetches only what is new at each poll.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from gaelp.v1 import common_pb2
from metrics.assessment import RunViolations
from metrics.history import EpisodeColumns, LearnerColumns, RunHistory
from metrics.state import RunState
from metrics.streams import MetricsStreams
from metrics.views import phase_summary

STATIC_DIR = Path(__file__).parent / "static"
PLOTLY_JS = Path(str(files("plotly") / "package_data" / "plotly.min.js"))
PAGE_LIMIT = 5000
MAX_PAGE_LIMIT = 50_000
C = TypeVar("C", EpisodeColumns, LearnerColumns)


def _phase_name(phase: int) -> str:
    return common_pb2.Phase.Name(common_pb2.Phase.ValueType(phase))


def _phase_view(
    streams: MetricsStreams, run: RunState, phase: int, violations: RunViolations
) -> dict[str, Any]:
    state = run.phases[phase]
    summary = phase_summary(run, state, violations, streams.settings.metrics)
    assessment = streams.assessment(run, phase)
    return {
        "phase": phase,
        "name": _phase_name(phase),
        "episodes": state.episodes,
        "failed_episodes": state.failed_episodes,
        "violations": violations.count,
        "curriculum_level": state.curriculum_level,
        "curriculum_levels": state.curriculum_levels,
        "window": {
            "normalized_reward": summary.window_normalized_reward,
            "roas": summary.window_roas,
            "ctr": summary.window_ctr,
            "conversion_rate": summary.window_conversion_rate,
            "spend_efficiency": summary.window_spend_efficiency,
            "success_rate": summary.window_success_rate,
        },
        "trend": {"reward_slope": summary.reward_slope,
                  "episodes_to_threshold": summary.episodes_to_threshold},
        "spend": {"total_spend": state.total_spend, "total_budget": state.total_budget,
                  "total_revenue": state.total_revenue},
        "assessment": {
            "ready_to_graduate": assessment.ready_to_graduate,
            "demote": assessment.demote,
            "reason": assessment.reason,
            "criteria": [
                {"name": c.name, "value": c.value, "threshold": c.threshold, "comparison": c.comparison,
                 "passed": c.passed}
                for c in assessment.criteria
            ],
        },
        "references": state.references,
    }


def _current(history: RunHistory, run: RunState, run_id: str) -> dict[str, Any]:
    """Where the run is now: its phase, and the task and level of its latest episode."""
    current: dict[str, Any] = {"phase": _phase_name(run.current_phase), "task": "", "curriculum_level": 0,
                               "curriculum_levels": 0}
    episodes = history.episodes.get(run_id)
    if episodes is not None and len(episodes):
        current["task"] = episodes.tasks[episodes.task[-1]]
        current["curriculum_level"] = episodes.level[-1]
    state = run.phases.get(run.current_phase)
    if state is not None:
        current["curriculum_levels"] = state.curriculum_levels
    return current


def run_view(streams: MetricsStreams, history: RunHistory, run_id: str) -> dict[str, Any] | None:
    run = streams.run_state(run_id)
    learner = streams.learner_state(run_id)
    campaigns = streams.campaign_violations(run_id)
    known = run_id in history.episodes or run_id in history.learners  # the tables may lag the history
    if run is None and learner is None and not campaigns and not known:
        return None
    run = run or RunState(run_id=run_id)
    violations = streams.run_violations(run_id)
    return {
        "run_id": run_id,
        "episodes": run.episodes,
        "current_phase": _phase_name(run.current_phase),
        "current": _current(history, run, run_id),
        "last_policy_version": run.last_policy_version,
        "phases": [_phase_view(streams, run, phase, violations.get(phase, RunViolations()))
                   for phase in sorted(run.phases)],
        "alerts": [alert.model_dump() for alert in run.alerts],
        "violations": [
            {"campaign_id": campaign.campaign_id, **record.model_dump()}
            for campaign in campaigns for record in campaign.recent
        ],
        "learner": learner.model_dump(exclude={"next_offsets"}) if learner is not None else None,
    }


def _page_bounds(request: web.Request) -> tuple[int, int]:
    """start and limit from the query; 400 (the HTTP INVALID_ARGUMENT) when they are not sane."""
    try:
        start = int(request.query.get("start", "0"))
        limit = int(request.query.get("limit", str(PAGE_LIMIT)))
    except ValueError:
        raise web.HTTPBadRequest(text="start and limit must be integers") from None
    if start < 0 or not 1 <= limit <= MAX_PAGE_LIMIT:
        raise web.HTTPBadRequest(text=f"start must be >= 0 and limit within 1..{MAX_PAGE_LIMIT}")
    return start, limit


def dashboard_app(streams: MetricsStreams, history: RunHistory) -> web.Application:
    poll_ms = streams.settings.metrics.dashboard_poll_ms

    async def runs(request: web.Request) -> web.Response:
        run_ids = sorted(set(streams.run_ids()) | set(streams.learner_ids())
                         | set(history.episodes))
        return web.json_response({"poll_ms": poll_ms, "runs": run_ids})

    async def run(request: web.Request) -> web.Response:
        view = run_view(streams, history, request.match_info["run_id"])
        if view is None:
            raise web.HTTPNotFound(text="unknown run")
        return web.json_response(view)

    def _known_but_empty(run_id: str, columns: type[C]) -> C:
        """An empty page for a run the service knows (its history may lag the tables); else 404."""
        if (run_id in history.episodes or run_id in history.learners
                or streams.run_state(run_id) is not None or streams.learner_state(run_id) is not None):
            return columns()
        raise web.HTTPNotFound(text="unknown run")

    async def episodes(request: web.Request) -> web.Response:
        start, limit = _page_bounds(request)
        run_id = request.match_info["run_id"]
        found = history.episodes.get(run_id)
        if found is None:
            found = _known_but_empty(run_id, EpisodeColumns)
        return web.json_response(found.page(start, limit))

    async def learner(request: web.Request) -> web.Response:
        start, limit = _page_bounds(request)
        run_id = request.match_info["run_id"]
        found = history.learners.get(run_id)
        if found is None:
            found = _known_but_empty(run_id, LearnerColumns)
        return web.json_response(found.page(start, limit))

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "index.html")

    async def plotly_js(request: web.Request) -> web.FileResponse:
        return web.FileResponse(PLOTLY_JS, headers={"Cache-Control": "max-age=86400"})

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/api/runs", runs)
    app.router.add_get("/api/runs/{run_id}", run)
    app.router.add_get("/api/runs/{run_id}/episodes", episodes)
    app.router.add_get("/api/runs/{run_id}/learner", learner)
    app.router.add_get("/vendor/plotly.min.js", plotly_js)
    app.router.add_static("/static/", STATIC_DIR)
    return app


class DashboardServer:
    def __init__(self, streams: MetricsStreams) -> None:
        self.settings = streams.settings.metrics
        self.history = RunHistory(streams.settings.kafka.bootstrap)
        self._runner = web.AppRunner(dashboard_app(streams, self.history), access_log=None)
        self.port = 0

    async def start(self) -> None:
        self.history.start()
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.http_host, self.settings.http_port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        await self._runner.cleanup()
        await self.history.stop()
