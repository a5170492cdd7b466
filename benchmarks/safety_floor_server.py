"""The transport's floor for benchmarks.safety_reserve: a grpc.aio server of the SafetyPolicy service
whose ReserveSpend and CommitSpend answer at once, with no database, validation, interceptors or
telemetry, on uvloop as the service runs. What the benchmark's clients reach against it is the most
any ledger behind gRPC in one Python process can reach on the same machine.

    .venv/bin/python -m benchmarks.safety_floor_server --port 50070
"""

from __future__ import annotations

import argparse
import uuid

import grpc
import uvloop

from gaelp.v1 import safety_pb2


async def reserve(request: safety_pb2.ReserveSpendRequest, context: grpc.aio.ServicerContext
                  ) -> safety_pb2.ReserveSpendResponse:
    return safety_pb2.ReserveSpendResponse(granted=True, reservation_id=uuid.uuid4().hex)


async def commit(request: safety_pb2.CommitSpendRequest, context: grpc.aio.ServicerContext
                 ) -> safety_pb2.CommitSpendResponse:
    return safety_pb2.CommitSpendResponse(reservation_id=request.reservation_id)


async def serve(port: int) -> None:
    """The two methods only: any other of the service answers UNIMPLEMENTED."""
    handlers = {
        "ReserveSpend": grpc.unary_unary_rpc_method_handler(
            reserve, request_deserializer=safety_pb2.ReserveSpendRequest.FromString,
            response_serializer=safety_pb2.ReserveSpendResponse.SerializeToString),
        "CommitSpend": grpc.unary_unary_rpc_method_handler(
            commit, request_deserializer=safety_pb2.CommitSpendRequest.FromString,
            response_serializer=safety_pb2.CommitSpendResponse.SerializeToString),
    }
    server = grpc.aio.server()
    service = grpc.method_handlers_generic_handler("gaelp.v1.SafetyPolicy", handlers)
    server.add_generic_rpc_handlers((service,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(serve(parser.parse_args().port))
