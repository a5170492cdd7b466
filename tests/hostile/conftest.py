"""The five services as real processes on loopback, started once for the hostile-input tests."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from gaelp.bus.local_broker import free_port
from gaelp.embedded.processes import ServiceProcess, health_status

# package -> full gRPC service name, for every service of the project
SERVICES = {
    "environment_registry": "gaelp.v1.EnvironmentRegistry",
    "safety_policy": "gaelp.v1.SafetyPolicy",
    "learner": "gaelp.v1.Learner",
    "metrics": "gaelp.v1.Metrics",
    "orchestrator": "gaelp.v1.Orchestrator",
}


@dataclass
class RunningServices:
    processes: dict[str, ServiceProcess]

    def target(self, package: str) -> str:
        return self.processes[package].target

    def assert_all_serving(self) -> None:
        for package, process in self.processes.items():
            assert process.process is not None and process.process.poll() is None, (
                f"{package} exited:\n{process.log_tail()}"
            )
            assert health_status(process.target, timeout_s=10.0) == "SERVING", process.log_tail()

    def logs(self) -> dict[str, str]:
        return {package: process.log_path.read_text(errors="replace")
                for package, process in self.processes.items()}


@pytest.fixture(scope="session")
def services(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServices]:
    root = tmp_path_factory.mktemp("hostile")
    base = {
        "GAELP_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "GAELP_KAFKA_ENABLE_IDEMPOTENCE": "false",
        "GAELP_KAFKA_ACKS": "1",
        "GAELP_GRPC_GRACE_PERIOD_S": "5",
        "GAELP_STORAGE_DATA_DIR": str(root / "data"),
        "GAELP_STORAGE_CHECKPOINT_DIR": str(root / "checkpoints"),
        "GAELP_ENVIRONMENT_REGISTRY_SPECS_DIR": "",
        "GAELP_METRICS_HTTP_PORT": str(free_port()),
    }
    ports = {package: free_port() for package in SERVICES}
    extra = {
        "orchestrator": {
            "GAELP_ORCHESTRATOR_LEARNER_TARGET": f"127.0.0.1:{ports['learner']}",
        },
    }
    processes = {
        package: ServiceProcess(
            package,
            {**base, "GAELP_DATABASE_URL": f"sqlite:///{root / f'{package}.db'}", **extra.get(package, {})},
            root / "logs",
            port=ports[package],
        )
        for package in SERVICES
    }
    running = RunningServices(processes)
    try:
        # Started side by side: one after the other would take minutes on two busy cores.
        with ThreadPoolExecutor(len(processes)) as pool:
            for started in [pool.submit(process.start, 180.0) for process in processes.values()]:
                started.result()
        yield running
    finally:
        for process in processes.values():
            process.stop()
