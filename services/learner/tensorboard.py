"""The learner's statistics per update as TensorBoard event files: <data_dir>/tensorboard/<run>/learner.

The same figures as the LearnerStats messages, stepped by policy version, so `tensorboard --logdir`
on the data directory (or the runs directory of the embedded job) shows them next to SB3/CleanRL runs.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from gaelp.v1 import events_pb2


class LearnerBoard:
    def __init__(self, data_dir: str | Path) -> None:
        self.root = Path(data_dir) / "tensorboard"
        self._writers: dict[str, SummaryWriter] = {}

    def logdir(self, run_id: str) -> Path:
        return self.root / run_id / "learner"

    def record(self, stats: events_pb2.LearnerStats) -> None:
        """One update's scalars; flushed at once (an update takes far longer than a small write)."""
        writer = self._writers.get(stats.run_id)
        if writer is None:
            writer = self._writers[stats.run_id] = SummaryWriter(log_dir=str(self.logdir(stats.run_id)))
        step = stats.policy_version
        for name, value in sorted(stats.losses.items()):
            writer.add_scalar(f"losses/{name}", value, step)
        for name, value in (
            ("train/entropy", stats.entropy),
            ("train/approx_kl", stats.approx_kl),
            ("train/grad_norm", stats.grad_norm),
            ("train/weight_change", stats.weight_change),
            ("throughput/samples_per_second", stats.samples_per_second),
            ("policy_lag/mean", stats.policy_lag_mean),
            ("policy_lag/max", float(stats.policy_lag_max)),
            ("data/trained_samples", float(stats.trained_samples)),
            ("data/dropped_stale_batches", float(stats.dropped_stale_batches)),
        ):
            writer.add_scalar(name, value, step)
        writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
