"""Learner checkpoints: every run's full training state plus the consumer offsets, written atomically.

Layout: <dir>/ckpt-<seq>/{manifest.json, run-<n>.pt}; a checkpoint is written to a temporary
directory and renamed into place, so the newest ckpt-* is always complete. The manifest names the
offsets (next offset to read per partition) that the saved state was trained up to, and per run the
policy version and the ids of the batches trained into it.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Offsets = dict[str, int]  # "topic:partition" -> next offset


@dataclass(frozen=True)
class SavedRun:
    run_id: str
    state_file: Path
    version: int
    trained_batch_ids: list[str]
    dropped_batch_ids: list[str]
    trained_samples: int


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    sequence: int
    offsets: Offsets
    runs: list[SavedRun]


class CheckpointStore:
    def __init__(self, directory: str | Path, kept: int) -> None:
        self.directory = Path(directory)
        self.kept = kept

    def _sequences(self) -> list[int]:
        if not self.directory.exists():
            return []
        return sorted(
            int(p.name.removeprefix("ckpt-"))
            for p in self.directory.iterdir()
            if p.is_dir() and p.name.startswith("ckpt-") and p.name[5:].isdigit()
        )

    def latest(self) -> Checkpoint | None:
        sequences = self._sequences()
        if not sequences:
            return None
        path = self.directory / f"ckpt-{sequences[-1]:08d}"
        manifest = json.loads((path / "manifest.json").read_text())
        runs = [
            SavedRun(
                run_id=entry["run_id"],
                state_file=path / entry["state_file"],
                version=entry["version"],
                trained_batch_ids=entry["trained_batch_ids"],
                dropped_batch_ids=entry["dropped_batch_ids"],
                trained_samples=entry["trained_samples"],
            )
            for entry in manifest["runs"]
        ]
        return Checkpoint(path, sequences[-1], manifest["offsets"], runs)

    def write(self, offsets: Offsets, runs: list[tuple[dict[str, Any], Any]]) -> Path:
        """runs: (manifest entry without state_file, save(path) callable) per run."""
        sequence = (self._sequences() or [0])[-1] + 1
        final = self.directory / f"ckpt-{sequence:08d}"
        staging = self.directory / f".staging-{sequence:08d}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        entries = []
        for index, (entry, save) in enumerate(runs):
            state_file = f"run-{index}.pt"
            save(staging / state_file)
            entries.append({**entry, "state_file": state_file})
        manifest = staging / "manifest.json"
        manifest.write_text(json.dumps({"offsets": offsets, "runs": entries}))
        with manifest.open("rb") as handle:
            os.fsync(handle.fileno())
        os.rename(staging, final)
        self._prune()
        return final

    def _prune(self) -> None:
        for sequence in self._sequences()[: -self.kept]:
            shutil.rmtree(self.directory / f"ckpt-{sequence:08d}", ignore_errors=True)
