"""The optional TLS port serves the same API; operator tokens travel over it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import grpc

from gaelp.v1 import safety_pb2, safety_pb2_grpc


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_tls_port_serves_the_api(tmp_path: Path, tools: Any, safety_process_factory: Any) -> None:
    cert, key = self_signed(tmp_path)
    tls_port = tools.free_port()
    section = tools.safety_section(tls_port=tls_port, tls_cert_path=str(cert), tls_key_path=str(key))
    service = safety_process_factory(f"sqlite:///{tmp_path / 'ledger.db'}", section)
    service.start()
    await service.wait_serving()
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    async with grpc.aio.secure_channel(f"localhost:{tls_port}", credentials) as channel:
        stub = safety_pb2_grpc.SafetyPolicyStub(channel)
        stop = await stub.EmergencyStop(
            safety_pb2.EmergencyStopRequest(reason="over TLS"), metadata=tools.operator_metadata
        )
        assert stop.stopped
        status = await stub.GetBudgetStatus(safety_pb2.GetBudgetStatusRequest(campaign_id="camp-a", phase=3))
        assert status.emergency_stopped
