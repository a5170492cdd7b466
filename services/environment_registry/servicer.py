"""gaelp.v1.EnvironmentRegistry over gRPC: validate the request, ask the catalogue, render the answer.

Deadlines: the server rejects no call for lacking one (grpc.health-style probes and ad-hoc tools
call it too); callers are expected to set one, and clients built with
ServiceRuntime.client_channel get settings.grpc.deadline_s by default. Register and Deprecate
change what the orchestrators will import and run, so they need an operator token.
"""

from __future__ import annotations

import grpc

from environment_registry.catalogue import EnvironmentCatalogue
from environment_registry.specs import SERVED_PHASES, SpecLimits, require_tag, to_message, validate_spec
from gaelp.service import InvalidArgument, rpc
from gaelp.service.auth import OperatorAuth
from gaelp.service.validation import require_enum, require_identifier, require_text
from gaelp.v1 import common_pb2, registry_pb2, registry_pb2_grpc


class EnvironmentRegistryServicer(registry_pb2_grpc.EnvironmentRegistryServicer):
    def __init__(self, catalogue: EnvironmentCatalogue, limits: SpecLimits, auth: OperatorAuth) -> None:
        self.catalogue = catalogue
        self.limits = limits
        self.auth = auth

    @rpc
    async def Register(
        self, request: registry_pb2.RegisterEnvironmentRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.RegisterEnvironmentResponse:
        self.auth.operator(context)
        if not request.HasField("spec"):
            raise InvalidArgument("spec is required")
        stored, created = await self.catalogue.register(validate_spec(request.spec, self.limits))
        return registry_pb2.RegisterEnvironmentResponse(spec=to_message(stored), created=created)

    @rpc
    async def Get(
        self, request: registry_pb2.GetEnvironmentRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.GetEnvironmentResponse:
        env_id = require_identifier("id", request.id)
        requested = require_text("version", request.version.strip(), max_length=256, required=False)
        stored = await self.catalogue.resolve(env_id, requested)
        return registry_pb2.GetEnvironmentResponse(spec=to_message(stored))

    @rpc
    async def List(
        self, request: registry_pb2.ListEnvironmentsRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.ListEnvironmentsResponse:
        phase = None
        if request.phase != common_pb2.PHASE_UNSPECIFIED:
            phase = require_enum("phase", request.phase, SERVED_PHASES)
        tag = require_tag("tag", request.tag) if request.tag else None
        listed = await self.catalogue.list(
            phase=phase,
            tag=tag,
            include_deprecated=request.include_deprecated,
            latest_only=request.latest_only,
        )
        return registry_pb2.ListEnvironmentsResponse(specs=[to_message(stored) for stored in listed])

    @rpc
    async def Deprecate(
        self, request: registry_pb2.DeprecateEnvironmentRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.DeprecateEnvironmentResponse:
        self.auth.operator(context)
        env_id = require_identifier("id", request.id)
        version = require_text("version", request.version, max_length=64)
        reason = require_text("reason", request.reason, max_length=self.limits.max_string_length)
        stored = await self.catalogue.deprecate(env_id, version, reason)
        return registry_pb2.DeprecateEnvironmentResponse(spec=to_message(stored))
