"""The gRPC control API: StartRun, PauseRun, ResumeRun, GetRunStatus."""

from __future__ import annotations

import json

import grpc

from gaelp.service import InvalidArgument, rpc
from gaelp.service.validation import require_identifier, require_text
from gaelp.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from orchestrator.runs import RunManager

MAX_CONFIG_CHARS = 65_536


class OrchestratorServicer(orchestrator_pb2_grpc.OrchestratorServicer):
    def __init__(self, runs: RunManager) -> None:
        self.runs = runs

    @rpc
    async def StartRun(
        self, request: orchestrator_pb2.StartRunRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.RunStatus:
        if request.run_id:
            require_identifier("run_id", request.run_id)
        require_text("config_json", request.config_json, max_length=MAX_CONFIG_CHARS, required=False)
        config = _parse_config(request.config_json)
        defaults = self.runs.settings
        episodes = config.pop("episodes", defaults.smoke_episodes)
        env_id = config.pop("env_id", defaults.smoke_env_id)
        seed = config.pop("seed", 0)
        if config:
            raise InvalidArgument(f"config_json has unknown keys: {sorted(config)}")
        if not isinstance(episodes, int) or not 1 <= episodes <= 1_000_000:
            raise InvalidArgument("episodes must be an integer in [1, 1000000]")
        if not isinstance(env_id, str):
            raise InvalidArgument("env_id must be a string")
        require_text("env_id", env_id)
        if not isinstance(seed, int):
            raise InvalidArgument("seed must be an integer")
        return self.runs.start(request.run_id, episodes, env_id, seed).status()

    @rpc
    async def PauseRun(
        self, request: orchestrator_pb2.RunIdRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.RunStatus:
        return self.runs.pause(require_identifier("run_id", request.run_id)).status()

    @rpc
    async def ResumeRun(
        self, request: orchestrator_pb2.RunIdRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.RunStatus:
        return self.runs.resume(require_identifier("run_id", request.run_id)).status()

    @rpc
    async def GetRunStatus(
        self, request: orchestrator_pb2.RunIdRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.RunStatus:
        return self.runs.get(require_identifier("run_id", request.run_id)).status()


def _parse_config(text: str) -> dict[str, object]:
    if not text:
        return {}
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidArgument(f"config_json is not valid JSON: {error}") from None
    if not isinstance(config, dict):
        raise InvalidArgument("config_json must be a JSON object")
    return config
