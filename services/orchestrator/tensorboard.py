"""The run's per-task evaluation curves as TensorBoard event files: <data_dir>/tensorboard/<run>/evaluation.

Next to the learner's statistics (<data_dir>/tensorboard/<run>/learner), so `tensorboard --logdir`
on the data directory (the run directory of the embedded job, var/gaelp/runs/<run>) shows both.
Each evaluation of the policy on the current curriculum task adds, stepped by the run's env steps
(one x axis across tasks):
    evaluation/normalized_reward/<task>   the deterministic policy's score (0 = random, 1 = upper reference)
    evaluation/reward/<task>              its mean episode return
    references/heuristic/<task>           the heuristic policy's score on the task, for comparison

Writers stay open between evaluations of a run (a new writer starts a new event file); at most
MAX_OPEN_WRITERS are held, the least recently used is closed beyond that, so an orchestrator that
drives many runs does not keep a file open per run it ever drove. (TensorBoard reads a folder's
event files in name order, whole seconds first; a run's evaluations are many env steps apart, so a
reopened writer's file always sorts after the one before.)
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from gaelp.config import GaelpSettings
from orchestrator.evaluation import AgentScore

MAX_OPEN_WRITERS = 8

_writers: OrderedDict[Path, SummaryWriter] = OrderedDict()


def evaluation_logdir(data_dir: str | Path, run_id: str) -> Path:
    return Path(data_dir) / "tensorboard" / run_id / "evaluation"


def _writer(logdir: Path) -> SummaryWriter:
    writer = _writers.get(logdir)
    if writer is None:
        writer = _writers[logdir] = SummaryWriter(log_dir=str(logdir))
        while len(_writers) > MAX_OPEN_WRITERS:
            _, oldest = _writers.popitem(last=False)
            oldest.close()
    _writers.move_to_end(logdir)
    return writer


def record_evaluation(settings: GaelpSettings, run_id: str, task: str, env_steps: int, score: AgentScore,
                      references: dict[str, float]) -> None:
    """One evaluation's scalars, flushed at once (evaluations are minutes apart; a crash loses none)."""
    if not settings.telemetry.tensorboard:
        return
    writer = _writer(evaluation_logdir(settings.storage.data_dir, run_id))
    writer.add_scalar(f"evaluation/normalized_reward/{task}", score.fraction, env_steps)
    writer.add_scalar(f"evaluation/reward/{task}", score.reward, env_steps)
    writer.add_scalar(f"references/heuristic/{task}", references["heuristic"], env_steps)
    writer.flush()
