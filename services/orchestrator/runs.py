"""Runs: each is a task that moves through the curriculum, stepping actors and publishing.

One round: every actor collects a chunk (T steps x N campaigns) in a worker thread with the
newest policy; the chunks become TransitionBatch messages, finished episodes become
EpisodeSummary messages and feed the curriculum scheduler; the run document is saved so that a
restarted orchestrator resumes at the same phase, task and counters. Actors stay at most
`max_rollouts_ahead` of the learner's rollouts ahead of the policy versions it has published, which
bounds the backlog on the bus and keeps PPO's data within the learner's lag bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field

import grpc
from opentelemetry import trace

from gaelp.bus import EPISODES, RUN_EVENTS, TRANSITIONS, BusProducer
from gaelp.bus.tracing import root_span
from gaelp.config import GaelpSettings
from gaelp.service import FailedPrecondition, NotFound
from gaelp.sim import CURRICULUM_LEVELS
from gaelp.v1 import common_pb2, events_pb2, learner_pb2, learner_pb2_grpc, orchestrator_pb2
from orchestrator.actor import Actor, Chunk
from orchestrator.curriculum import CurriculumScheduler, Decision
from orchestrator.environments import ResolvedEnvironment
from orchestrator.evaluation import RandomActionAgent, evaluation_for
from orchestrator.leases import LeaseLost
from orchestrator.messages import episode_summary, transition_batch
from orchestrator.money.phase import ACTIVE_STATES, MONEY_PHASES, MoneyPhaseRunner
from orchestrator.phase2 import historical_figures, load_logs
from orchestrator.phases import PhaseMachine, Transition, phase_name
from orchestrator.policy import PolicyHolder
from orchestrator.run_document import (
    CriterionDocument,
    LevelReportDocument,
    PhaseTransitionDocument,
    RunDocument,
)
from orchestrator.run_store import RunStore
from orchestrator.tensorboard import record_evaluation

logger = logging.getLogger(__name__)


class EnvironmentFailed(RuntimeError):
    pass


@dataclass
class _Pacing:
    """Samples produced since `base_version` against the versions the learner made from them."""

    max_rollouts_ahead: float
    base_version: int
    produced: int = 0

    def ahead(self, policy: PolicyHolder) -> bool:
        """rollout_samples comes from the learner with each policy; 0 never waits."""
        if policy.rollout_samples <= 0:
            return False
        rollouts_trained = policy.version - self.base_version
        return self.produced / policy.rollout_samples - rollouts_trained >= self.max_rollouts_ahead

    def restart(self, version: int) -> None:
        self.base_version, self.produced = version, 0


@dataclass
class Run:
    document: RunDocument
    scheduler: CurriculumScheduler
    policy: PolicyHolder
    phases: PhaseMachine
    resume: asyncio.Event = field(default_factory=asyncio.Event)
    phase_changed: asyncio.Event = field(default_factory=asyncio.Event)
    last_assessment: str = ""  # reason of the newest assessment of the current phase
    stop: bool = False
    task: asyncio.Task[None] | None = None

    def status(self) -> orchestrator_pb2.RunStatus:
        budget = self.scheduler.settings.max_env_steps_per_task
        return self.document.status(self.scheduler.task.name, self.scheduler.window_mean, budget)


class RunManager:
    def __init__(self, settings: GaelpSettings, producer: BusProducer, store: RunStore,
                 learner_channel: grpc.aio.Channel | None, environment: ResolvedEnvironment) -> None:
        self.settings = settings
        self.config = settings.orchestrator
        self.producer = producer
        self.store = store
        self.learner = None if learner_channel is None else learner_pb2_grpc.LearnerStub(learner_channel)
        self.environment = environment
        self.env_factory = environment.factory
        probe = self.env_factory(1, self.config.curriculum.levels[0], 0)
        self.observation_space, self.action_space = probe.single_observation_space, probe.single_action_space
        self.evaluation = evaluation_for(probe, self.env_factory)
        probe.close()
        self.level_names = [level.name for level in CURRICULUM_LEVELS]
        self.host = socket.gethostname()
        self.runs: dict[str, Run] = {}
        self.tracer = trace.get_tracer("gaelp.orchestrator")
        self.money = MoneyPhaseRunner(self.config.money, store, producer, settings.training)

    # ---- control ---------------------------------------------------------------------------
    def _new_run(self, document: RunDocument) -> Run:
        scheduler = CurriculumScheduler(self.config.curriculum, self.level_names, document.curriculum)
        holder = PolicyHolder(self.settings.training, self.observation_space, self.action_space)
        phases = PhaseMachine(self.config.phases, document.run_id, document.phase,
                              document.phase_entry_policy_version, document.phase_entry())
        run = Run(document, scheduler, holder, phases)
        if document.state == "running":
            run.resume.set()
        return run

    async def start(self, run_id: str, kind: str, max_env_steps: int, smoke_episodes: int) -> Run:
        run_id = run_id or uuid.uuid4().hex[:12]
        if kind == "train" and self.learner is None:
            raise FailedPrecondition("no learner configured: only smoke runs can start")
        # The run's lease first: of two replicas starting the same id, one creates it.
        if run_id in self.runs or not await self.store.claim_new(run_id, time.time()):
            raise FailedPrecondition(f"run {run_id} exists already")
        document = RunDocument(
            run_id=run_id, kind=kind, seed=self.settings.training.seed, max_env_steps=max_env_steps,
            smoke_episodes=smoke_episodes, actor_batches=[0] * self.config.actors,
        )
        await self._save(document)
        return self._launch(await asyncio.to_thread(self._new_run, document))

    def _launch(self, run: Run) -> Run:
        self.runs[run.document.run_id] = run
        run.task = asyncio.create_task(self._drive(run), name=f"run-{run.document.run_id}")
        return run

    async def resume_unfinished(self) -> list[str]:
        """Take over and relaunch every running or paused run no live replica holds (at start, and
        periodically: ownership.py), from its stored document."""
        resumed = []
        for raw in await self.store.take_over(time.time()):
            document = RunDocument.model_validate(raw)
            if document.run_id in self.runs:
                continue
            # Off the event loop: building the policy takes seconds of CPU, and leases must renew.
            self._launch(await asyncio.to_thread(self._new_run, document))
            resumed.append(document.run_id)
            logger.info("resumed run", extra={"run_id": document.run_id, "state": document.state,
                                              "episodes": document.episodes,
                                              "env_steps": document.env_steps})
        return resumed

    def abandon(self, run_id: str) -> None:
        """Another replica holds the run's lease now: stop driving it at once (saves are refused)."""
        run = self.runs.get(run_id)
        if run is not None and run.task is not None:
            run.task.cancel()

    def get(self, run_id: str) -> Run:
        try:
            return self.runs[run_id]
        except KeyError:
            raise NotFound(f"no run {run_id}") from None

    async def pause(self, run_id: str) -> Run:
        run = self.get(run_id)
        if run.document.state != "running":
            raise FailedPrecondition(f"run {run_id} is {run.document.state}, not running")
        run.resume.clear()
        run.document.state = "paused"
        await self._save(run.document)
        return run

    async def resume(self, run_id: str) -> Run:
        run = self.get(run_id)
        if run.document.state != "paused":
            raise FailedPrecondition(f"run {run_id} is {run.document.state}, not paused")
        run.document.state = "running"
        await self._save(run.document)
        run.resume.set()
        return run

    async def offer_policy(self, update: events_pb2.PolicyUpdate) -> None:
        run = self.runs.get(update.run_id)
        if run is not None:
            await run.policy.offer(update)

    # ---- phases ----------------------------------------------------------------------------
    async def on_assessment(self, assessment: events_pb2.GraduationAssessment) -> None:
        run = self.runs.get(assessment.run_id)
        if run is None or run.document.state not in ACTIVE_STATES:
            return
        if assessment.phase == run.document.phase:
            run.last_assessment = assessment.reason
        await self._apply_transition(run, run.phases.on_assessment(assessment, run.policy.version))

    async def on_violation(self, violation: events_pb2.Violation, run_ids: Collection[str]) -> None:
        for run in list(self.runs.values()):
            if run.document.state not in ACTIVE_STATES or run.document.run_id not in run_ids:
                continue
            transition = run.phases.on_violation(violation, run.document.campaign_ids, run.policy.version)
            await self._apply_transition(run, transition)

    async def _apply_transition(self, run: Run, transition: Transition | None) -> None:
        """Publish the transition, then record it: a crash in between redelivers the assessment or
        violation, which yields the same transition with the same event id (de-duplicated)."""
        if transition is None:
            return
        document = run.document
        index = len(document.phase_history)
        entry = PhaseTransitionDocument(
            at=time.time(), from_phase=transition.from_phase, to_phase=transition.to_phase,
            reason=transition.reason, policy_version=transition.policy_version,
            criteria=[CriterionDocument(name=c.name, value=c.value, threshold=c.threshold,
                                        comparison=c.comparison, passed=c.passed)
                      for c in transition.criteria],
        )
        message = entry.message()
        event = events_pb2.RunEvent(event_id=f"{document.run_id}:phase:{index}", run_id=document.run_id,
                                    occurred_at=message.at, phase_transition=message.transition)
        await self.producer.send(RUN_EVENTS, document.run_id, event)
        document.phase_history.append(entry)
        if transition.completes_run:
            document.state = "completed"
            document.detail = (f"graduated from phase {transition.from_phase} "
                               f"({phase_name(transition.from_phase)}), the last phase enabled")
        else:
            document.phase = transition.to_phase
            document.phase_entry_policy_version = transition.policy_version
            document.phase_work_done = False
            document.consolidation_env_steps = 0
            if transition.to_phase == common_pb2.PHASE_SIMULATION and _curriculum_complete(document):
                # Back to simulation: train on the last task again until the run graduates anew.
                document.curriculum.history.append({"task": run.scheduler.task.name,
                                                    "decision": "reopened_on_demotion"})
        run.phases.entry = document.phase_entry()  # the phase now entered (or, completed, the last one)
        run.last_assessment = ""
        await self._save(document)
        logger.info("phase transition", extra={"run_id": document.run_id, "from": transition.from_phase,
                                               "to": transition.to_phase, "reason": transition.reason})
        run.phase_changed.set()

    async def _validate_on_logs(self, run: Run) -> None:
        """Phase 2's work: the run's policy on the sandbox's logs (or the user's, when settings name a
        file), reported as one phase-2 episode."""
        document, cfg = run.document, self.config.phases.historical
        logs = (await asyncio.to_thread(load_logs, cfg.user_logs, cfg.simulator_level)
                if cfg.user_logs is not None else None)
        figures = await asyncio.to_thread(historical_figures, run.policy.agent, cfg.simulator_level,
                                          cfg.campaigns, cfg.days, document.seed, cfg.tolerance, logs=logs)
        document.historical = figures.flat()
        summary = events_pb2.EpisodeSummary(
            run_id=document.run_id, episode_id=f"{document.run_id}:historical:{len(document.phase_history)}",
            phase=common_pb2.PHASE_HISTORICAL, task="historical-validation",
            policy_version=document.policy_version, historical_match=figures.historical_match,
            prediction_accuracy=figures.prediction_accuracy,
            prediction_correlation=figures.prediction_correlation, success=True,
        )
        document.phase_entry(common_pb2.PHASE_HISTORICAL).stamp(summary)
        await self.producer.send(EPISODES, document.run_id, summary)
        document.episodes += 1
        document.phase_work_done = True
        await self._save(document)

    async def _await_phase_decision(self, run: Run) -> None:
        """The current phase's own work is done: wait for the assessment that moves the run, at
        most graduation_wait_s, then complete the run saying why it did not graduate."""
        run.phase_changed.clear()
        document = run.document
        phase = document.phase
        try:
            await asyncio.wait_for(run.phase_changed.wait(), self.config.phases.graduation_wait_s)
        except TimeoutError:
            if document.phase == phase and document.state in ACTIVE_STATES:
                document.state = "completed"
                document.detail = (f"phase {phase} ({phase_name(phase)}) did not graduate within "
                                   f"{self.config.phases.graduation_wait_s:.0f} s; last assessment: "
                                   f"{run.last_assessment or 'none received'}")
                await self._save(document)

    async def drain(self) -> None:
        """Finish the round in flight, save every run, stop."""
        for run in self.runs.values():
            run.stop = True
            run.resume.set()
            run.phase_changed.set()
        await asyncio.gather(*(r.task for r in self.runs.values() if r.task), return_exceptions=True)
        await self.money.close()

    async def _save(self, document: RunDocument) -> None:
        await self.store.save(document.run_id, lambda: (document.state, document.model_dump(mode="json")),
                              time.time())

    # ---- driving a run ---------------------------------------------------------------------
    async def _drive(self, run: Run) -> None:
        document = run.document
        watch: asyncio.Task[None] | None = None
        try:
            if document.kind == "train":
                await self._fetch_initial_policy(run)
                watch = asyncio.create_task(self._watch_policy(run), name=f"watch-{document.run_id}")
            while not run.stop and document.state in ACTIVE_STATES:
                if document.phase == common_pb2.PHASE_SIMULATION and not _curriculum_complete(document):
                    await self._run_task(run)
                elif document.phase == common_pb2.PHASE_SIMULATION and self._consolidating(run):
                    await self._run_task(run, consolidate=True)
                elif document.phase == common_pb2.PHASE_HISTORICAL and not document.phase_work_done:
                    await self._validate_on_logs(run)
                elif document.phase in MONEY_PHASES and not document.phase_work_done:
                    await self.money.work(run, self._save)
                else:
                    if not document.phase_work_done:
                        document.phase_work_done = True
                        await self._save(document)
                    await self._await_phase_decision(run)
        except LeaseLost as lost:
            logger.warning("stopped driving run %s: %s", document.run_id, lost)
            return
        except Exception as error:
            document.state = "failed"
            document.detail = f"{type(error).__name__}: {error}"
            logger.exception("run %s failed", document.run_id)
        finally:
            if watch is not None:
                watch.cancel()
        with contextlib.suppress(LeaseLost):  # lost at the last moment: the new holder's state stands
            await self._save(document)

    async def _watch_policy(self, run: Run) -> None:
        """Learner.WatchPolicy pushes each new version as it is made: the low-latency path next to
        the policy topic (which also reaches orchestrators that the learner does not know)."""
        assert self.learner is not None
        delay = 0.5
        while True:
            request = learner_pb2.WatchPolicyRequest(run_id=run.document.run_id,
                                                     after_version=run.policy.newest_offered)
            try:
                async for update in self.learner.WatchPolicy(request,
                                                             timeout=self.config.policy_watch_deadline_s):
                    await run.policy.offer(update)
                    delay = 0.5
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    continue  # the stream's deadline passed: open the next one at once
                logger.warning("policy watch ended (%s); reconnecting", error.code().name)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _fetch_initial_policy(self, run: Run) -> None:
        assert self.learner is not None
        delay = 0.5
        while True:
            try:
                # Opens the run at the learner (idempotent), which answers with its newest policy.
                update = await self.learner.OpenRun(
                    learner_pb2.OpenRunRequest(run_id=run.document.run_id), timeout=10
                )
                break
            except grpc.aio.AioRpcError as error:
                if error.code() not in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}:
                    raise
                logger.warning("learner not reachable yet (%s); retrying", error.code().name)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        await run.policy.offer(update)
        run.policy.apply_offer()
        run.document.policy_version = run.policy.version

    async def _wait_for_newer_policy(self, run: Run) -> None:
        """Wait for the policy topic; on timeout ask the learner directly (an update published
        before this process's policy consumer joined its group would otherwise be missed)."""
        version = run.policy.version
        if await run.policy.wait_for_offer_above(version, self.config.max_policy_wait_s):
            return
        assert self.learner is not None
        try:
            update = await self.learner.GetPolicy(
                learner_pb2.GetPolicyRequest(run_id=run.document.run_id), timeout=10
            )
        except grpc.aio.AioRpcError as error:
            logger.warning("no policy newer than v%d yet and the learner did not answer: %s",
                           version, error.code().name)
            return
        await run.policy.offer(update)

    async def _references(self, run: Run, level: int) -> dict[str, float]:
        cached = run.document.references.get(level)
        if cached is None:
            cached = await asyncio.to_thread(self.evaluation.reference_scores, level,
                                             self.config.curriculum.evaluation_envs)
            run.document.references[level] = cached
        return cached

    def _actors(self, run: Run, level: int) -> list[Actor]:
        document = run.document
        actors = []
        for index in range(self.config.actors):
            # Seeds differ per actor and per round of restarts so that resumed runs see fresh days.
            seed = document.seed * 1_000_003 + index * 10_007 + document.batches_published
            env = self.env_factory(self.config.envs_per_actor, level, seed)
            actors.append(Actor(env, seed))
        return actors

    def _level_report(self, run: Run) -> LevelReportDocument | None:
        task = run.scheduler.task
        for report in reversed(run.document.levels):
            if report.task == task.name and not report.decision:
                return report
        return None

    def _consolidating(self, run: Run) -> bool:
        """Phase 1 after its curriculum: train on the last task until graduation is decided, within
        the consolidation budget (the consistency criterion needs a policy that keeps its level)."""
        document = run.document
        return (document.kind == "train" and not document.phase_work_done and not self._finished(run)
                and document.consolidation_env_steps < self.config.curriculum.consolidation_env_steps)

    async def _run_task(self, run: Run, consolidate: bool = False) -> None:
        """Train on the scheduler's task until it decides to move, or (consolidating) until phase 1
        is decided or the consolidation budget is spent; the scheduler decides nothing then."""
        document, scheduler = run.document, run.scheduler
        task = scheduler.task
        refs = await self._references(run, task.level)
        report = self._level_report(run)
        if report is None and document.kind == "train" and not consolidate:
            start = await asyncio.to_thread(self.evaluation.evaluate, run.policy.agent, task.level,
                                            self.config.curriculum.evaluation_envs, refs["oracle_roas"])
            report = LevelReportDocument(task=task.name, level=task.level, agent_start=start.fraction,
                                         agent_reward_start=start.reward, **refs)
            document.levels.append(report)
            await self._save(document)
        actors = self._actors(run, task.level)
        failures = 0
        pace = _Pacing(self.config.max_rollouts_ahead, run.policy.version)
        while not run.stop:
            await run.resume.wait()
            if run.stop or document.phase != common_pb2.PHASE_SIMULATION or document.state == "completed":
                break  # a phase transition ended simulation training
            if document.kind == "train":
                run.policy.apply_offer()
                if pace.ahead(run.policy):
                    await self._wait_for_newer_policy(run)
                    run.policy.apply_offer()
                    if pace.ahead(run.policy):
                        # The learner did not keep up (or dropped data): go on, and count from here.
                        pace.restart(run.policy.version)
                document.policy_version = run.policy.version
            if document.phase != common_pb2.PHASE_SIMULATION:
                break  # the transition landed while waiting for a policy
            agent = run.policy.agent if document.kind == "train" else RandomActionAgent(run.policy.agent)
            try:
                chunks = await asyncio.gather(*(
                    asyncio.to_thread(actor.collect, agent, self.config.chunk_steps) for actor in actors
                ))
            except Exception as error:
                failures += 1
                await self._environment_failed(run, task.name, error, failures)
                actors = self._actors(run, task.level)
                continue
            failures = 0
            # One trace per round: its transition batches and episodes, and what consumed them.
            round_attributes = {"gaelp.run_id": document.run_id, "gaelp.task": task.name}
            with root_span(self.tracer, "rollout round", round_attributes):
                decision = await self._publish_round(run, chunks, refs, evaluate=not consolidate)
            samples = sum(chunk.samples for chunk in chunks)
            pace.produced += samples
            if consolidate:
                document.consolidation_env_steps += samples
                if not self._consolidating(run) or document.phase != common_pb2.PHASE_SIMULATION:
                    break
            elif decision != "stay" or self._finished(run) or document.phase != common_pb2.PHASE_SIMULATION:
                await self._close_task(run, report, decision)
                return
            if document.batches_published % self.config.checkpoint_every_batches < len(chunks):
                await self._save(document)
        if consolidate and not run.stop:
            await self._end_consolidation(run)
        await self._save(document)

    async def _end_consolidation(self, run: Run) -> None:
        """The last level's exit figures are the policy's at the end of phase 1's training."""
        document = run.document
        report = document.levels[-1] if document.levels else None
        if report is not None:
            end = await asyncio.to_thread(self.evaluation.evaluate, run.policy.agent, report.level,
                                          self.config.curriculum.evaluation_envs, report.oracle_roas)
            report.agent_end, report.agent_reward_end = end.fraction, end.reward
        if document.phase == common_pb2.PHASE_SIMULATION:
            document.phase_work_done = True
            if self._finished(run):
                document.state = "completed"
                document.detail = "the run's step budget ended phase 1 before its graduation"

    def _finished(self, run: Run) -> bool:
        document = run.document
        if document.kind == "smoke":
            return document.episodes >= document.smoke_episodes
        return 0 < document.max_env_steps <= document.env_steps

    async def _environment_failed(self, run: Run, task: str, error: Exception, failures: int) -> None:
        document = run.document
        document.failed_episodes += self.config.actors * self.config.envs_per_actor
        logger.error(
            "environment failed; episodes in flight marked failed, restarting it",
            extra={"run_id": document.run_id, "task": task, "attempt": failures,
                   "max_retries": self.config.env_retries, "error": repr(error)},
        )
        failed = events_pb2.EpisodeSummary(run_id=document.run_id, episode_id=uuid.uuid4().hex,
                                           phase=document.phase, task=task, failed=True,  # type: ignore[arg-type]
                                           policy_version=document.policy_version)
        await self.producer.send(EPISODES, document.run_id, failed)
        if failures > self.config.env_retries:
            raise EnvironmentFailed(f"environment failed {failures} times in a row: {error!r}") from error

    async def _publish_round(self, run: Run, chunks: list[Chunk], refs: dict[str, float],
                             evaluate: bool = True) -> Decision:
        """Publish one round of phase 1's training data: it stays phase 1's even when a transition
        lands while it is collected or published."""
        phase = common_pb2.PHASE_SIMULATION
        document, scheduler = run.document, run.scheduler
        task = scheduler.task.name
        decision: Decision = "stay"
        sequences = list(document.actor_batches)
        if document.kind == "train":
            # Reserve the round's batch ids in the store before sending them: after a crash between
            # the sends and the round's save, the restarted process must not reuse an id.
            document.actor_batches = [sequence + 1 for sequence in sequences]
            await self._save(document)
        entry = document.phase_entry(phase)  # the round is phase 1's, of its latest entry
        # A smoke run acts at random before any policy exists (version -1): its episodes say 0.
        episode_policy_version = max(run.policy.version, 0)
        deliveries = []
        for index, chunk in enumerate(chunks):
            actor_id = f"{document.run_id}-actor-{index}"
            if document.kind == "train":
                batch = transition_batch(chunk, document.run_id, actor_id,
                                         f"{document.run_id}:{index}:{sequences[index]}",
                                         run.policy.version, task, phase)
                deliveries.append(await self.producer.enqueue(TRANSITIONS, actor_id, batch))
                document.batches_published += 1
            document.env_steps += chunk.samples
            scheduler.record_steps(chunk.samples, len(chunk.episodes))
            for episode in chunk.episodes:
                summary = entry.stamp(episode_summary(
                    episode, document.run_id, actor_id, episode_policy_version, task, refs,
                    curriculum_level=scheduler.task.difficulty + 1,
                    curriculum_levels=len(scheduler.tasks), phase=phase,
                ))
                deliveries.append(await self.producer.enqueue(EPISODES, document.run_id, summary))
                document.episodes += 1
        # One wait for the round: the run document is saved only after the broker has it all.
        await asyncio.gather(*deliveries)
        if evaluate and document.kind == "train" and self._evaluation_due(run):
            score = await asyncio.to_thread(self.evaluation.evaluate, run.policy.agent, scheduler.task.level,
                                            self.config.curriculum.evaluation_envs, refs["oracle_roas"])
            record_evaluation(self.settings, document.run_id, task, document.env_steps, score, refs)
            decision = scheduler.record_evaluation(score.fraction, refs["heuristic"])
        return decision

    def _evaluation_due(self, run: Run) -> bool:
        every = self.config.curriculum.evaluation_every_steps
        steps = run.scheduler.state.steps_on_task
        round_samples = self.config.actors * self.config.envs_per_actor * self.config.chunk_steps
        return steps // every != (steps - round_samples) // every

    async def _close_task(self, run: Run, report: LevelReportDocument | None, decision: Decision) -> None:
        document, scheduler = run.document, run.scheduler
        if report is not None:
            end = await asyncio.to_thread(
                self.evaluation.evaluate, run.policy.agent, report.level,
                self.config.curriculum.evaluation_envs, report.oracle_roas,
            )
            report.agent_end, report.agent_reward_end = end.fraction, end.reward
            if decision == "stay":  # graduation or the run's own step budget ended it on this task
                report.decision = ("graduated" if document.phase != common_pb2.PHASE_SIMULATION
                                   else "stopped_on_run_budget")
                report.episodes = scheduler.state.episodes_on_task
                report.env_steps = scheduler.state.steps_on_task
            else:  # the scheduler moved on; its history holds the task just left
                last = scheduler.state.history[-1]
                report.decision = decision
                report.episodes = int(str(last["episodes"]))
                report.env_steps = int(str(last["steps"]))
        # A run that graduated from phase 1 during this task goes on to phase 2's work instead.
        # A completed curriculum goes on to consolidation (_drive) while phase 1 is decided.
        graduated = document.phase != common_pb2.PHASE_SIMULATION
        if not graduated and (decision == "stopped_on_task_budget" or self._finished(run)):
            document.state = "completed"
        await self._save(document)


def _curriculum_complete(document: RunDocument) -> bool:
    """The phase-1 curriculum's last task was passed (and not reopened by a demotion since)."""
    history = document.curriculum.history
    return bool(history) and history[-1].get("decision") == "complete"
