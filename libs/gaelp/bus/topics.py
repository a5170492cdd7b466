"""The topics of docs/architecture.md, each bound to the protobuf message its values carry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from google.protobuf.message import DecodeError, Message

from gaelp.v1 import events_pb2

M = TypeVar("M", bound=Message)


class UndecodableMessage(ValueError):
    """The bytes on a topic are not a valid value for it."""


@dataclass(frozen=True)
class Topic(Generic[M]):
    name: str
    message_type: type[M]
    config: dict[str, str] = field(default_factory=dict)

    def encode(self, value: M) -> bytes:
        if not isinstance(value, self.message_type):
            raise TypeError(f"{self.name} carries {self.message_type.__name__}, got {type(value).__name__}")
        return value.SerializeToString()

    def decode(self, data: bytes | None) -> M:
        if data is None:
            raise UndecodableMessage(f"{self.name}: empty value (tombstone)")
        message = self.message_type()
        try:
            message.ParseFromString(data)
        except DecodeError as error:
            raise UndecodableMessage(f"{self.name}: not a {self.message_type.__name__}: {error}") from error
        return message


EPISODES = Topic("gaelp.episodes.v1", events_pb2.EpisodeSummary)
TRANSITIONS = Topic("gaelp.transitions.v1", events_pb2.TransitionBatch)
VIOLATIONS = Topic("gaelp.violations.v1", events_pb2.Violation)
POLICY = Topic("gaelp.policy.v1", events_pb2.PolicyUpdate, config={"cleanup.policy": "compact"})
LEARNER_METRICS = Topic("gaelp.learner-metrics.v1", events_pb2.LearnerStats)
ASSESSMENTS = Topic("gaelp.assessments.v1", events_pb2.GraduationAssessment)
RUN_EVENTS = Topic("gaelp.run-events.v1", events_pb2.RunEvent)

ALL_TOPICS: tuple[Topic[Any], ...] = (
    EPISODES,
    TRANSITIONS,
    VIOLATIONS,
    POLICY,
    LEARNER_METRICS,
    ASSESSMENTS,
    RUN_EVENTS,
)
