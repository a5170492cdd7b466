"""A user's own logged campaign data (CSV), validated row by row into LoggedAdData.

The format is documented in docs/historical_data.md. Every problem is reported with the file's line
number and the column, so that a bad export can be fixed where it is wrong.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from gaelp.sim.historical.ad_logs import LoggedAdData, LoggingSetup
from gaelp.sim.market.config import CREATIVE_TYPES

OBSERVATION_SIZE = 128
ID_COLUMNS = ("campaign_id", "hour")
CHOICE_COLUMNS = ("creative", "audience", "propensity", "clicks")
OBSERVATION_COLUMNS = tuple(f"obs_{i}" for i in range(OBSERVATION_SIZE))
COLUMNS = ID_COLUMNS + CHOICE_COLUMNS + OBSERVATION_COLUMNS


class LogFileError(ValueError):
    """A row or column of a log file that does not follow the format."""

    def __init__(self, line: int, column: str, message: str) -> None:
        super().__init__(f"line {line}, column {column!r}: {message}")
        self.line, self.column = line, column


def _number(text: str, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise LogFileError(line, column, f"not a number: {text[:40]!r}") from None
    if not math.isfinite(value):
        raise LogFileError(line, column, "must be finite")
    return value


def _integer(text: str, line: int, column: str, low: int, high: int) -> int:
    value = _number(text, line, column)
    if value != int(value) or not low <= value < high:
        raise LogFileError(line, column, f"must be an integer in [{low}, {high}), got {text[:40]!r}")
    return int(value)


def load_user_logs(path: str | Path, num_audiences: int, setup: LoggingSetup | None = None) -> LoggedAdData:
    """Read and validate a log file; the first problem found raises LogFileError."""
    observations, arms, propensities, clicks, campaigns = [], [], [], [], []
    with Path(path).open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise LogFileError(1, missing[0], f"missing column ({len(missing)} missing in all)")
        for row in reader:
            line = reader.line_num
            if not row["campaign_id"]:
                raise LogFileError(line, "campaign_id", "empty")
            _integer(row["hour"], line, "hour", 0, 10**9)
            creative = _integer(row["creative"], line, "creative", 0, len(CREATIVE_TYPES))
            audience = _integer(row["audience"], line, "audience", 0, num_audiences)
            propensity = _number(row["propensity"], line, "propensity")
            if not 0 < propensity <= 1:
                raise LogFileError(line, "propensity", f"must be in (0, 1], got {propensity}")
            click = _number(row["clicks"], line, "clicks")
            if click < 0:
                raise LogFileError(line, "clicks", "must be >= 0")
            observations.append([_number(row[c], line, c) for c in OBSERVATION_COLUMNS])
            arms.append(creative * num_audiences + audience)
            propensities.append(propensity)
            clicks.append(click)
            campaigns.append(row["campaign_id"])
    if not arms:
        raise LogFileError(2, "campaign_id", "the file has no data rows")
    return LoggedAdData(
        obs=np.asarray(observations, dtype=np.float32), arm=np.asarray(arms), pscore=np.asarray(propensities),
        reward=np.asarray(clicks), num_audiences=num_audiences, setup=setup or LoggingSetup(),
        campaign=np.unique(np.asarray(campaigns), return_inverse=True)[1].reshape(-1),
    )
