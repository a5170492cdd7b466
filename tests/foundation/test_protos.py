"""The generated code in libs/gaelp/v1 must match what protos/ generates today."""

from __future__ import annotations

from pathlib import Path

from gaelp import protogen
from gaelp.v1 import events_pb2


def test_generated_code_is_current(tmp_path: Path) -> None:
    fresh = protogen.generate(output_root=tmp_path)
    committed_dir = protogen.OUTPUT_ROOT / "gaelp" / "v1"
    assert fresh, "protoc generated nothing"
    stale = [
        path.name
        for path in fresh
        if not (committed_dir / path.name).exists()
        or (committed_dir / path.name).read_bytes() != path.read_bytes()
    ]
    assert not stale, f"regenerate with `make protos`: stale or missing {stale}"
    expected = {path.name for path in fresh}
    extra = {
        path.name for path in committed_dir.iterdir() if path.suffix in {".py", ".pyi"}
    } - expected
    assert not extra, f"generated files without a .proto: {sorted(extra)}"


def test_every_topic_message_exists() -> None:
    for name in ("EpisodeSummary", "TransitionBatch", "Violation", "PolicyUpdate", "LearnerStats",
                 "GraduationAssessment"):
        assert hasattr(events_pb2, name), name
    tensor = events_pb2.TransitionBatch().observations
    assert {f.name for f in tensor.DESCRIPTOR.fields} == {"dtype", "shape", "data"}
