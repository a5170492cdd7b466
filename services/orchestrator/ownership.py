"""How orchestrator replicas share runs: leases kept, runs taken over, phase inputs routed.

Two tasks per replica (`LeaseKeeper.keep`, `LeaseKeeper.scan`), every
`orchestrator.leases.renew_interval_s`:
1. renew the leases this replica holds; stop driving (cancel) every run whose lease was lost;
2. apply the pause/resume requests operators made through other replicas;
3. give up the leases of runs whose task ended (completed, failed, stopped);
4. apply the phase inputs other replicas forwarded for the runs held here;
5. take over every unfinished run without a live lease (its replica died or drained) and resume
   it from the store: counters and batch sequences continue from the stored document.

Phase inputs come from one consumer group shared by the replicas, so each message reaches one
replica: it applies it to the runs it drives and forwards it, through the run store, to the
replica driving any other unfinished run it concerns (or to whichever replica takes that run
over). A message is committed only once applied or forwarded, so none is lost to a run changing
hands; at-least-once is safe because a transition's event id is derived from the run's history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from gaelp.bus import ASSESSMENTS, VIOLATIONS
from gaelp.config.sections.orchestrator import LeaseSettings
from gaelp.service import FailedPrecondition
from gaelp.v1 import events_pb2
from orchestrator.leases import LeaseLost
from orchestrator.run_store import UNFINISHED, RunStore
from orchestrator.runs import RunManager

logger = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(self, runs: RunManager, store: RunStore, settings: LeaseSettings) -> None:
        self.runs = runs
        self.store = store
        self.settings = settings
        # The scan and the phase consumer both apply forwarded inputs: one at a time, or an entry
        # read by both before either settled it would be applied twice.
        self._forwarded_lock = asyncio.Lock()

    async def keep(self) -> None:
        """Steps 1-3, every renew interval."""
        interval = self.settings.renew_interval_s
        last = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            gap, last = time.monotonic() - last, time.monotonic()
            if gap > 2 * interval:
                # Leases expire when renewals come this late: the process is starved or blocked.
                logger.warning("lease renewal %.1f s after the previous one (every %.1f s, leases last"
                               " %.1f s)", gap, interval, self.settings.duration_s)
            try:
                await self.renew_round()
            except Exception:
                # A database outage must not stop the replica; leases it could not renew count
                # as lost once they expire (RunStore.renew), which stops their runs.
                logger.exception("lease renewal failed; retrying in %.1f s", interval)

    async def scan(self) -> None:
        """Steps 4-5, every renew interval, in a task of their own: resuming a run takes seconds
        (its policy is built), and renewals must not wait for it."""
        while True:
            await asyncio.sleep(self.settings.renew_interval_s)
            try:
                await self.scan_round()
            except Exception:
                logger.exception("take-over scan failed; retrying in %.1f s", self.settings.renew_interval_s)

    async def renew_round(self) -> None:
        lost, requests = await self.store.renew(time.time())
        for run_id in lost:
            logger.warning("lease lost: another replica drives run %s now", run_id)
            self.runs.abandon(run_id)
        for run_id, state in requests.items():
            await self._apply_request(run_id, state)
        for run_id, run in list(self.runs.runs.items()):
            if run.task is not None and run.task.done():
                del self.runs.runs[run_id]
                await self.store.release(run_id)

    async def scan_round(self) -> list[str]:
        """Returns the runs taken over."""
        for run_id in list(self.store.held):
            with contextlib.suppress(LeaseLost):  # lost meanwhile: the entries wait for the new holder
                await self.apply_forwarded(run_id)
        return await self.runs.resume_unfinished()

    async def _apply_request(self, run_id: str, state: str) -> None:
        """Apply an operator's pause/resume made through another replica, then settle it; a
        request this replica could not apply (lease lost) stays for the run's next holder."""
        if not self.drives(run_id):
            logger.info("operator request %s for run %s left for the replica driving it", state, run_id)
            return
        logger.info("applying operator request %s for run %s", state, run_id)
        try:
            if state == "paused":
                await self.runs.pause(run_id)
            elif state == "running":
                await self.runs.resume(run_id)
        except LeaseLost:
            return
        except FailedPrecondition as moot:
            logger.info("operator request for run %s is moot: %s", run_id, moot)
        await self.store.settle_request(run_id, state)

    def drives(self, run_id: str) -> bool:
        """This replica holds the run's lease and its task is alive."""
        run = self.runs.runs.get(run_id)
        return (self.store.holds(run_id) and run is not None and run.task is not None
                and not run.task.done())

    # ---- phase inputs ------------------------------------------------------------------------
    async def on_assessment(self, assessment: events_pb2.GraduationAssessment) -> None:
        run_id = assessment.run_id
        if self.drives(run_id):
            try:
                await self.apply_forwarded(run_id)  # older inputs first
                await self.runs.on_assessment(assessment)
                return
            except LeaseLost:
                pass  # lost while applying: the new holder applies it
        document = await self.store.load(run_id)
        if document is not None and document.get("state") in UNFINISHED:
            await self.store.forward(run_id, ASSESSMENTS.name, assessment.SerializeToString())

    async def on_violation(self, violation: events_pb2.Violation) -> None:
        for document in await self.store.unfinished():
            run_id = str(document["run_id"])
            if violation.run_id != run_id and violation.campaign_id not in document.get("campaign_ids", []):
                continue
            if self.drives(run_id):
                try:
                    await self.runs.on_violation(violation, {run_id})
                    continue
                except LeaseLost:
                    pass
            await self.store.forward(run_id, VIOLATIONS.name, violation.SerializeToString())

    async def apply_forwarded(self, run_id: str) -> None:
        """Apply, oldest first, what other replicas forwarded for a run driven here."""
        async with self._forwarded_lock:
            for entry in await self.store.forwarded(run_id):
                if not self.drives(run_id):
                    return
                if entry.topic == ASSESSMENTS.name:
                    await self.runs.on_assessment(events_pb2.GraduationAssessment.FromString(entry.payload))
                else:
                    await self.runs.on_violation(events_pb2.Violation.FromString(entry.payload), {run_id})
                await self.store.settle(entry.id)
