"""An actor: the shared rollout collector stepping the run's vector environment.

A chunk is T steps of N campaigns in columns (it becomes a TransitionBatch) plus the EpisodeSummary
data of every episode that ended inside it. The stepping is `gaelp.rl.rollout.RolloutCollector`,
the very code `Agent.learn` trains with, so the product collects data the way the benchmarks
measure. Chunks are collected in a worker thread; an actor holds no bus or gRPC state, so it can be
tested and benchmarked in-process.
"""

from __future__ import annotations

from gaelp.rl.rollout import FinishedEpisode, Rollout, RolloutCollector

Chunk = Rollout
Actor = RolloutCollector

__all__ = ["Actor", "Chunk", "FinishedEpisode"]
