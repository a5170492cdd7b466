"""The HTTP dashboard: a static page that polls a JSON API built from the same tables as gRPC."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from gaelp.v1 import common_pb2
from metrics.assessment import RunViolations
from metrics.state import RunState
from metrics.streams import MetricsStreams
from metrics.views import phase_summary

STATIC_DIR = Path(__file__).parent / "static"


def _phase_view(
    streams: MetricsStreams, run: RunState, phase: int, violations: RunViolations
) -> dict[str, Any]:
    state = run.phases[phase]
    summary = phase_summary(run, state, violations, streams.settings.metrics)
    assessment = streams.assessment(run, phase)
    return {
        "phase": phase,
        "name": common_pb2.Phase.Name(common_pb2.Phase.ValueType(phase)),
        "episodes": state.episodes,
        "failed_episodes": state.failed_episodes,
        "violations": violations.count,
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
        "curves": {task: [point.model_dump() for point in curve] for task, curve in state.curves.items()},
        "references": state.references,
    }


def run_view(streams: MetricsStreams, run_id: str) -> dict[str, Any] | None:
    run = streams.run_state(run_id)
    learner = streams.learner_state(run_id)
    campaigns = streams.campaign_violations(run_id)
    if run is None and learner is None and not campaigns:
        return None
    run = run or RunState(run_id=run_id)
    violations = streams.run_violations(run_id)
    return {
        "run_id": run_id,
        "episodes": run.episodes,
        "current_phase": common_pb2.Phase.Name(common_pb2.Phase.ValueType(run.current_phase)),
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


def dashboard_app(streams: MetricsStreams) -> web.Application:
    poll_ms = streams.settings.metrics.dashboard_poll_ms

    async def runs(request: web.Request) -> web.Response:
        run_ids = sorted(set(streams.run_ids()) | {str(key) for key in streams.learners.keys()})
        return web.json_response({"poll_ms": poll_ms, "runs": run_ids})

    async def run(request: web.Request) -> web.Response:
        view = run_view(streams, request.match_info["run_id"])
        if view is None:
            raise web.HTTPNotFound(text="unknown run")
        return web.json_response(view)

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "index.html")

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/api/runs", runs)
    app.router.add_get("/api/runs/{run_id}", run)
    app.router.add_static("/static/", STATIC_DIR)
    return app


class DashboardServer:
    def __init__(self, streams: MetricsStreams) -> None:
        self.settings = streams.settings.metrics
        self._runner = web.AppRunner(dashboard_app(streams), access_log=None)
        self.port = 0

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.http_host, self.settings.http_port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        await self._runner.cleanup()
