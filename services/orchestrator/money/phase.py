"""The run manager's entry to the money phases: phase 3's or phase 4's work for one run, and the
emergency stop."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from gaelp.bus import BusProducer
from gaelp.config.sections.money import MoneySettings
from gaelp.config.sections.training import TrainingSettings
from gaelp.v1 import common_pb2
from orchestrator.evaluation import RandomActionAgent
from orchestrator.money.driver import MoneyPhases, RunHandle
from orchestrator.money.records import MoneyStore
from orchestrator.money.scaled import ScaledPhase
from orchestrator.run_store import RunStore

if TYPE_CHECKING:
    from orchestrator.run_document import RunDocument
    from orchestrator.runs import Run

logger = logging.getLogger(__name__)

MONEY_PHASES = frozenset({common_pb2.PHASE_REAL_TESTING, common_pb2.PHASE_SCALED})
# States in which a run is still being driven (awaiting_approval: a money gate waits for an operator).
ACTIVE_STATES = frozenset({"running", "paused", "awaiting_approval"})


class MoneyPhaseRunner:
    def __init__(self, settings: MoneySettings, store: RunStore, producer: BusProducer,
                 training: TrainingSettings) -> None:
        self.settings = settings
        self.training = training  # phase 4's transfer test trains with the run's algorithm settings
        self.store = store
        self.producer = producer
        self._phases: MoneyPhases | None = None

    async def phases(self) -> MoneyPhases:
        if self._phases is None:
            records = await MoneyStore.open(self.store.db, self.store.fenced)
            self._phases = MoneyPhases(self.settings, records, self.producer)
        return self._phases

    async def work(self, run: Run, save: Callable[[RunDocument], Awaitable[None]]) -> None:
        """The money phase's campaigns for the run; marks the phase's work done, or completes the run
        when an operator rejected its entry."""
        document = run.document

        async def set_state(state: str, detail: str) -> None:
            if document.state in ACTIVE_STATES and (document.state, document.detail) != (state, detail):
                document.state, document.detail = state, detail  # type: ignore[assignment]
                await save(document)

        async def episode_done() -> None:
            document.episodes += 1
            await save(document)

        agent = run.policy.agent if document.kind == "train" else RandomActionAgent(run.policy.agent)
        handle = RunHandle(run_id=document.run_id, phase=document.phase, agent=agent,
                           policy_version=lambda: run.policy.version, set_state=set_state,
                           episode_done=episode_done, stopping=lambda: run.stop,
                           current_phase=lambda: document.phase, entry=document.phase_entry())
        phases = await self.phases()
        if document.phase == common_pb2.PHASE_SCALED:
            scaled = ScaledPhase(phases, self.training, run.scheduler.settings.levels)
            outcome = await scaled.run_phase(handle, run.policy.agent, document.kind != "train",
                                             document.seed)
        else:
            outcome = await phases.run_phase(handle)
        if (document.phase, document.phase_entry().attempt) != (handle.phase, handle.entry.attempt):
            # An assessment moved the run on while the campaigns ran (they end as planned first):
            # the work done is the left phase entry's, not the current one's.
            logger.info("run %s left phase %d while its campaigns ran", document.run_id, handle.phase)
        elif outcome == "done":
            document.phase_work_done = True
        elif outcome == "rejected":
            document.state = "completed"
            document.detail = ("entry to the money phases (enter_phase_3) was rejected by an operator: the"
                               f" run stays out of phase {document.phase}")
        await save(document)

    async def pause_everything(self) -> list[str]:
        return await (await self.phases()).pause_everything()

    async def close(self) -> None:
        if self._phases is not None:
            await self._phases.close()
