"""The curriculum scheduler: tasks with difficulty and prerequisites, advanced by performance.

A task is a simulator level. The run starts at the first task (no prerequisite); each later task
requires the one before. Performance is the rolling mean, over the last `window` evaluations, of
the deterministic policy's normalized reward on that task (gaelp.sim.market.policies: 0 = random
play, 1 = the upper-bound planner; the same seeded days every time, so evaluations compare).
Rules, checked after every evaluation:
- advance: at least `min_env_steps` on the task and the window mean >= advance_threshold (and,
  with advance_over_heuristic, above the heuristic's normalized reward on the task), or the task's
  step budget is spent (recorded as advanced on budget, not on performance);
- the last task completes on performance only: when its step budget is spent without that, the
  run stops there with "stopped_on_task_budget", which is not a completed curriculum;
- regress: with a full window whose mean is below regress_threshold on a task with a
  prerequisite, the run goes back to the prerequisite (a performance collapse);
- the run's phase-1 curriculum is complete when the last task advances.
After that the run manager keeps training on the last task (consolidation) until phase 1's
graduation is decided; the scheduler makes no more decisions then.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from gaelp.config.sections.orchestrator import CurriculumSettings
from orchestrator.run_document import CurriculumDocument

Decision = Literal["stay", "advance", "advance_on_budget", "regress", "complete", "stopped_on_task_budget"]


@dataclass(frozen=True)
class Task:
    name: str
    level: int
    difficulty: int
    prerequisite: str | None


class CurriculumScheduler:
    def __init__(self, settings: CurriculumSettings, level_names: list[str],
                 state: CurriculumDocument | None = None) -> None:
        self.settings = settings
        self.tasks = [
            Task(level_names[level], level, difficulty,
                 None if difficulty == 0 else level_names[settings.levels[difficulty - 1]])
            for difficulty, level in enumerate(settings.levels)
        ]
        self.state = state or CurriculumDocument()
        self._window: deque[float] = deque(self.state.window, maxlen=settings.window)

    @property
    def task(self) -> Task:
        return self.tasks[self.state.task_index]

    @property
    def window_mean(self) -> float:
        return sum(self._window) / len(self._window) if self._window else 0.0

    def record_steps(self, steps: int, episodes: int) -> None:
        self.state.steps_on_task += steps
        self.state.episodes_on_task += episodes

    def record_evaluation(self, normalized_reward: float, heuristic: float = 0.0) -> Decision:
        """`heuristic` is the heuristic policy's normalized reward on the current task."""
        self._window.append(normalized_reward)
        self.state.window = list(self._window)
        return self._decide(heuristic)

    def _decide(self, heuristic: float) -> Decision:
        cfg = self.settings
        last = self.state.task_index == len(self.tasks) - 1
        mean = self.window_mean
        full = len(self._window) >= cfg.window
        mastered = mean >= cfg.advance_threshold and (not cfg.advance_over_heuristic or mean > heuristic)
        if self.state.steps_on_task >= cfg.min_env_steps and full and mastered:
            return self._move("complete" if last else "advance", +0 if last else +1)
        if self.state.steps_on_task >= cfg.max_env_steps_per_task:
            return self._move("stopped_on_task_budget" if last else "advance_on_budget", 0 if last else 1)
        if full and mean < cfg.regress_threshold and self.task.prerequisite is not None:
            return self._move("regress", -1)
        return "stay"

    def _move(self, decision: Decision, delta: int) -> Decision:
        self.state.history.append({
            "task": self.task.name,
            "decision": decision,
            "episodes": self.state.episodes_on_task,
            "steps": self.state.steps_on_task,
            "window_mean": round(self.window_mean, 4),
        })
        self.state.task_index += delta
        self.state.episodes_on_task = 0
        self.state.steps_on_task = 0
        self._window.clear()
        self.state.window = []
        return decision
