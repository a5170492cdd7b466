"""The Open Bandit Dataset sample (ZOZOTOWN fashion recommendations) in its logged-bandit format.

The obp package's source distribution ships a 10,000-row sample per logging policy (random,
Bernoulli Thompson sampling "bts") and campaign (all, men, women). `fetch_obd` fetches that sdist
with pip, as pip is the ordinary client of PyPI, and keeps only the CSV files in the cache.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OBP_VERSION = "0.5.7"
OBD_CAMPAIGNS: tuple[str, ...] = ("all", "men", "women")
OBD_POLICIES: tuple[str, ...] = ("random", "bts")
_MEMBER_PREFIX = f"obp-{OBP_VERSION}/obp/dataset/obd/"
_COMPLETE_MARKER = ".complete"


class ObdFetchError(RuntimeError):
    pass


def obd_root(cache_dir: str | Path) -> Path:
    return Path(cache_dir) / "obd"


def fetch_obd(cache_dir: str | Path, force: bool = False) -> Path:
    """Download obp's sdist and extract the OBD sample into <cache_dir>/obd; returns that folder."""
    root = obd_root(cache_dir)
    if (root / _COMPLETE_MARKER).exists() and not force:
        return root
    with tempfile.TemporaryDirectory() as download_dir:
        # obp declares Python < 3.11; we only want its data files, never to install it.
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            "--ignore-requires-python", "--disable-pip-version-check", "-d", download_dir,
            f"obp=={OBP_VERSION}",
        ]  # fmt: skip
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        archives = list(Path(download_dir).glob(f"obp-{OBP_VERSION}.tar.gz"))
        if completed.returncode != 0 or not archives:
            raise ObdFetchError(f"pip download of obp=={OBP_VERSION} failed:\n{completed.stderr[-2000:]}")
        staging = Path(download_dir) / "obd"
        with tarfile.open(archives[0]) as archive:
            for member in archive.getmembers():
                if not (member.isfile() and member.name.startswith(_MEMBER_PREFIX)):
                    continue
                relative = Path(member.name[len(_MEMBER_PREFIX) :])
                if relative.suffix != ".csv" or ".." in relative.parts:
                    continue
                target = staging / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                assert source is not None  # a regular file member always has content
                target.write_bytes(source.read())
        missing = [
            f"{p}/{c}"
            for p in OBD_POLICIES
            for c in OBD_CAMPAIGNS
            if not (staging / p / c / f"{c}.csv").exists()
        ]
        if missing:
            raise ObdFetchError(f"obp=={OBP_VERSION} sdist lacks OBD files for {missing}")
        if root.exists():
            shutil.rmtree(root)
        root.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), root)
    (root / _COMPLETE_MARKER).write_text(OBP_VERSION)
    return root


@dataclass(frozen=True)
class LoggedBanditFeedback:
    """Rows of (context, action, position, reward) with the logging policy's propensity."""

    policy: str
    campaign: str
    n_actions: int
    n_positions: int
    action: np.ndarray  # (n,) int
    position: np.ndarray  # (n,) int, 0-based
    reward: np.ndarray  # (n,) float (click)
    pscore: np.ndarray  # (n,) logging propensity of the logged action at its position
    context: np.ndarray  # (n, d) one-hot user features
    affinity: np.ndarray  # (n, n_actions) user-item affinity
    timestamp: np.ndarray  # (n,) sortable strings

    @property
    def n_rounds(self) -> int:
        return int(self.action.shape[0])


def _one_hot(columns: list[list[str]]) -> np.ndarray:
    blocks = []
    for values in columns:
        categories = {value: i for i, value in enumerate(sorted(set(values)))}
        block = np.zeros((len(values), len(categories)))
        block[np.arange(len(values)), [categories[v] for v in values]] = 1.0
        blocks.append(block)
    return np.hstack(blocks)


def load_obd(root: str | Path, policy: str, campaign: str) -> LoggedBanditFeedback:
    if policy not in OBD_POLICIES or campaign not in OBD_CAMPAIGNS:
        raise ValueError(f"policy must be in {OBD_POLICIES} and campaign in {OBD_CAMPAIGNS}")
    folder = Path(root) / policy / campaign
    with (folder / "item_context.csv").open() as handle:
        n_actions = sum(1 for _ in csv.DictReader(handle))
    with (folder / f"{campaign}.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    user_columns = sorted(k for k in rows[0] if k.startswith("user_feature_"))
    affinity_columns = [f"user-item_affinity_{i}" for i in range(n_actions)]
    position = np.array([int(r["position"]) for r in rows]) - 1
    return LoggedBanditFeedback(
        policy=policy,
        campaign=campaign,
        n_actions=n_actions,
        n_positions=int(position.max()) + 1,
        action=np.array([int(r["item_id"]) for r in rows]),
        position=position,
        reward=np.array([float(r["click"]) for r in rows]),
        pscore=np.array([float(r["propensity_score"]) for r in rows]),
        context=_one_hot([[r[c] for r in rows] for c in user_columns]),
        affinity=np.array([[float(r[c]) for c in affinity_columns] for r in rows]),
        timestamp=np.array([r["timestamp"] for r in rows]),
    )
