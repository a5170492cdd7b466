"""Run bookkeeping: each run is a task that steps environments and publishes what happened."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from gaelp.bus import EPISODES, BusProducer
from gaelp.config.sections.orchestrator import OrchestratorSettings
from gaelp.service import FailedPrecondition, NotFound
from gaelp.v1 import common_pb2, orchestrator_pb2
from orchestrator.episodes import episode_summary, run_random_episode

logger = logging.getLogger(__name__)


@dataclass
class Run:
    run_id: str
    env_id: str
    episodes_target: int
    seed: int
    state: str = "running"
    episodes: int = 0
    env_steps: int = 0
    detail: str = ""
    resume: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def status(self) -> orchestrator_pb2.RunStatus:
        return orchestrator_pb2.RunStatus(
            run_id=self.run_id,
            state=self.state,
            phase=common_pb2.PHASE_SIMULATION,
            task=self.env_id,
            episodes=self.episodes,
            env_steps=self.env_steps,
            detail=self.detail,
        )


class RunManager:
    def __init__(self, settings: OrchestratorSettings, producer: BusProducer, actor_id: str) -> None:
        self.settings = settings
        self.producer = producer
        self.actor_id = actor_id
        self.runs: dict[str, Run] = {}

    def start(self, run_id: str, episodes: int, env_id: str, seed: int) -> Run:
        run_id = run_id or uuid.uuid4().hex[:12]
        if run_id in self.runs:
            raise FailedPrecondition(f"run {run_id} exists already")
        run = Run(run_id, env_id, episodes, seed)
        run.resume.set()
        run.task = asyncio.create_task(self._drive(run), name=f"run-{run_id}")
        self.runs[run_id] = run
        return run

    def get(self, run_id: str) -> Run:
        try:
            return self.runs[run_id]
        except KeyError:
            raise NotFound(f"no run {run_id}") from None

    def pause(self, run_id: str) -> Run:
        run = self.get(run_id)
        if run.state != "running":
            raise FailedPrecondition(f"run {run_id} is {run.state}, not running")
        run.resume.clear()
        run.state = "paused"
        return run

    def resume(self, run_id: str) -> Run:
        run = self.get(run_id)
        if run.state != "paused":
            raise FailedPrecondition(f"run {run_id} is {run.state}, not paused")
        run.state = "running"
        run.resume.set()
        return run

    async def _drive(self, run: Run) -> None:
        env = gym.make(run.env_id)
        rng = np.random.default_rng(run.seed)
        try:
            while run.episodes < run.episodes_target:
                await run.resume.wait()
                # Environments step synchronously; a thread keeps the gRPC server responsive.
                result = await asyncio.to_thread(run_random_episode, env, rng)
                summary = episode_summary(run.run_id, run.env_id, self.actor_id, 0, result)
                await self.producer.send(EPISODES, run.run_id, summary)
                run.episodes += 1
                run.env_steps += result.steps
            run.state = "completed"
        except Exception as error:
            run.state = "failed"
            run.detail = f"{type(error).__name__}: {error}"
            logger.exception("run %s failed", run.run_id)
        finally:
            env.close()

    async def drain(self) -> None:
        """Let each running episode finish and publish, then stop the runs."""
        for run in self.runs.values():
            run.episodes_target = min(run.episodes_target, run.episodes + 1)
        tasks = [run.task for run in self.runs.values() if run.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
