"""What a valid message is, per topic: checked in full before a consumer changes any state.

A consumer decodes a record, then calls validate(topic_name, message); a message that fails goes
to the DLQ on its own and the rest of the poll is processed. The checks are what every consumer of
the topic relies on: ids present, enum values known, numbers finite, counts non-negative, tensors
whose dtype, shape and byte size agree (sizes computed in Python integers, so a shape whose element
count overflows int64 cannot pass). Checks that need a consumer's own configuration (the learner's
observation width) stay with that consumer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from google.protobuf.message import Message

from gaelp.bus.tensors import TensorError, from_tensor
from gaelp.bus.topics import (
    ASSESSMENTS,
    EPISODES,
    LEARNER_METRICS,
    POLICY,
    RUN_EVENTS,
    TRANSITIONS,
    VIOLATIONS,
)
from gaelp.v1 import common_pb2, events_pb2

_PHASES = frozenset(common_pb2.Phase.values())
_RUN_PHASES = _PHASES - {common_pb2.PHASE_UNSPECIFIED}
_SEVERITIES = frozenset(events_pb2.Severity.values())
_MAX_ID_CHARS = 256
_TRANSITION_COLUMNS = ("observations", "actions", "rewards", "dones", "log_probs", "values",
                       "next_observations", "truncations")


class InvalidMessage(ValueError):
    """A decoded message whose content no consumer of its topic may act on."""


def _ids(message: Any, *names: str) -> None:
    for name in names:
        value = getattr(message, name)
        if not value:
            raise InvalidMessage(f"{name} is empty")
        if len(value) > _MAX_ID_CHARS:
            raise InvalidMessage(f"{name} is longer than {_MAX_ID_CHARS} characters")


def _finite(message: Any, *names: str) -> None:
    for name in names:
        if not math.isfinite(getattr(message, name)):
            raise InvalidMessage(f"{name} is not a finite number")


def _finite_map(name: str, values: Iterable[tuple[str, float]]) -> None:
    for key, value in values:
        if not math.isfinite(value):
            raise InvalidMessage(f"{name}[{key[:40]!r}] is not a finite number")


def _non_negative(message: Any, *names: str) -> None:
    for name in names:
        if getattr(message, name) < 0:
            raise InvalidMessage(f"{name} is negative")


def _enum(name: str, value: int, allowed: frozenset[int]) -> None:
    if value not in allowed:
        raise InvalidMessage(f"{name} {value} is not a known value")


def validate_episode(episode: events_pb2.EpisodeSummary) -> None:
    _ids(episode, "run_id")
    _enum("phase", episode.phase, _RUN_PHASES)
    _finite(episode, "total_reward", "normalized_reward", "spend", "revenue", "roas", "ctr", "budget",
            "historical_match", "prediction_accuracy", "prediction_correlation")
    _non_negative(episode, "policy_version", "steps", "spend", "revenue", "roas", "ctr", "budget",
                  "impressions", "clicks", "conversions", "curriculum_level", "curriculum_levels")
    _finite_map("reward_components", episode.reward_components.items())
    _finite_map("reference_rewards", episode.reference_rewards.items())
    if episode.curriculum_level > episode.curriculum_levels:
        raise InvalidMessage(f"curriculum_level {episode.curriculum_level} is above curriculum_levels "
                             f"{episode.curriculum_levels}")


def validate_transitions(batch: events_pb2.TransitionBatch) -> None:
    _ids(batch, "run_id", "actor_id", "batch_id")
    _non_negative(batch, "policy_version")
    for name in _TRANSITION_COLUMNS:
        if not batch.HasField(name):  # type: ignore[arg-type]  # the column names are message fields
            raise InvalidMessage(f"{name} is missing")
    for name in (*_TRANSITION_COLUMNS, "next_values"):
        if batch.HasField(name):  # type: ignore[arg-type]  # the column names are message fields
            try:
                array = from_tensor(getattr(batch, name), name)
            except TensorError as error:
                raise InvalidMessage(str(error)) from error
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise InvalidMessage(f"{name} contains NaN or infinite values")


def validate_violation(violation: events_pb2.Violation) -> None:
    _ids(violation, "violation_id", "run_id", "rule")  # run-wide limits have no campaign
    _enum("severity", violation.severity, _SEVERITIES)
    _enum("phase", violation.phase, _PHASES)
    _finite(violation, "amount")
    _non_negative(violation, "amount")


def validate_policy(update: events_pb2.PolicyUpdate) -> None:
    _ids(update, "run_id", "algorithm")
    _non_negative(update, "version", "trained_samples", "rollout_samples")
    if not update.weights and not update.checkpoint_uri:
        raise InvalidMessage("neither weights nor checkpoint_uri is set")


def validate_learner_stats(stats: events_pb2.LearnerStats) -> None:
    _ids(stats, "run_id")
    _finite(stats, "entropy", "approx_kl", "grad_norm", "weight_change", "samples_per_second",
            "policy_lag_mean")
    _non_negative(stats, "policy_version", "samples_per_second", "policy_lag_mean", "policy_lag_max",
                  "dropped_stale_batches", "trained_samples")
    _finite_map("losses", stats.losses.items())


def validate_assessment(assessment: events_pb2.GraduationAssessment) -> None:
    _ids(assessment, "run_id")
    _enum("phase", assessment.phase, _RUN_PHASES)
    _non_negative(assessment, "episodes_considered")
    for criterion in assessment.criteria:
        if not criterion.name:
            raise InvalidMessage("a criterion has no name")
        if criterion.comparison not in (">=", "<="):
            raise InvalidMessage(f"criterion {criterion.name[:40]!r}: comparison must be >= or <=")
        _finite(criterion, "value", "threshold")


def validate_run_event(event: events_pb2.RunEvent) -> None:
    _ids(event, "event_id", "run_id")
    kind = event.WhichOneof("event")
    if kind is None:
        raise InvalidMessage("the event is empty (no phase_transition or approval_requested)")
    if kind == "phase_transition":
        _enum("phase_transition.from_phase", event.phase_transition.from_phase, _PHASES)
        _enum("phase_transition.to_phase", event.phase_transition.to_phase, _PHASES)
    else:
        _ids(event.approval_requested, "approval_id")
        _finite(event.approval_requested, "amount")
        _non_negative(event.approval_requested, "amount")


VALIDATORS: dict[str, Callable[[Any], None]] = {
    EPISODES.name: validate_episode,
    TRANSITIONS.name: validate_transitions,
    VIOLATIONS.name: validate_violation,
    POLICY.name: validate_policy,
    LEARNER_METRICS.name: validate_learner_stats,
    ASSESSMENTS.name: validate_assessment,
    RUN_EVENTS.name: validate_run_event,
}


def validate(topic: str, message: Message) -> None:
    """Raise InvalidMessage unless the message is valid for the topic (topics without rules pass)."""
    validator = VALIDATORS.get(topic)
    if validator is not None:
        validator(message)
