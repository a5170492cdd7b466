"""A user's own logged campaign data (CSV), validated row by row into LoggedAdData.

The format is documented in docs/historical_data.md. Every problem is reported with the file's line
number and the column, so that a bad export can be fixed where it is wrong. `write_user_logs` writes
logged data in the same format (how the sandbox's logs are exported as an example file).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from gaelp.sim.historical.ad_logs import AccountTerms, LoggedAdData, LoggingSetup
from gaelp.sim.market.config import CREATIVE_TYPES

OBSERVATION_SIZE = 128
ID_COLUMNS = ("campaign_id", "hour")
CHOICE_COLUMNS = ("creative", "audience", "propensity", "clicks")
OBSERVATION_COLUMNS = tuple(f"obs_{i}" for i in range(OBSERVATION_SIZE))
COLUMNS = ID_COLUMNS + CHOICE_COLUMNS + OBSERVATION_COLUMNS
# The platform's other reports per row: optional, all three or none. Calibrating the simulator on the
# logs needs them (gaelp.sim.historical.calibration); without them phase 2 predicts uncalibrated.
REPORT_COLUMNS = ("impressions", "spend", "conversions")


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


def _count(text: str, line: int, column: str) -> float:
    value = _number(text, line, column)
    if value < 0:
        raise LogFileError(line, column, "must be >= 0")
    return value


def _integer(text: str, line: int, column: str, low: int, high: int) -> int:
    value = _number(text, line, column)
    if value != int(value) or not low <= value < high:
        raise LogFileError(line, column, f"must be an integer in [{low}, {high}), got {text[:40]!r}")
    return int(value)


def _report_columns(header: list[str]) -> tuple[str, ...]:
    present = [c for c in REPORT_COLUMNS if c in header]
    if present and len(present) < len(REPORT_COLUMNS):
        missing = next(c for c in REPORT_COLUMNS if c not in header)
        raise LogFileError(1, missing, f"the report columns {', '.join(REPORT_COLUMNS)} go together:"
                                       f" {', '.join(present)} given without it")
    return tuple(present)


def load_user_logs(path: str | Path, num_audiences: int, setup: LoggingSetup | None = None,
                   account: AccountTerms | None = None) -> LoggedAdData:
    """Read and validate a log file; the first problem found raises LogFileError.

    Rows may come in any order; they are returned hour by hour, campaigns in file order within an
    hour (the layout of generated logs, which calibration's replay relies on)."""
    rows: list[tuple[int, int, list[float], int, float, float, list[float]]] = []
    campaign_index: dict[str, int] = {}
    seen: dict[tuple[int, int], int] = {}
    with Path(path).open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise LogFileError(1, missing[0], f"missing column ({len(missing)} missing in all)")
        reports = _report_columns(header)
        for row in reader:
            line = reader.line_num
            if not row["campaign_id"]:
                raise LogFileError(line, "campaign_id", "empty")
            campaign = campaign_index.setdefault(row["campaign_id"], len(campaign_index))
            hour = _integer(row["hour"], line, "hour", 0, 10**9)
            if (campaign, hour) in seen:
                raise LogFileError(line, "hour", f"campaign {row['campaign_id'][:40]!r} already has"
                                                 f" hour {hour} (line {seen[campaign, hour]})")
            seen[campaign, hour] = line
            creative = _integer(row["creative"], line, "creative", 0, len(CREATIVE_TYPES))
            audience = _integer(row["audience"], line, "audience", 0, num_audiences)
            propensity = _number(row["propensity"], line, "propensity")
            if not 0 < propensity <= 1:
                raise LogFileError(line, "propensity", f"must be in (0, 1], got {propensity}")
            clicks = _count(row["clicks"], line, "clicks")
            observation = [_number(row[c], line, c) for c in OBSERVATION_COLUMNS]
            reported = [_count(row[c], line, c) for c in reports]
            rows.append((hour, campaign, observation, creative * num_audiences + audience, propensity,
                         clicks, reported))
    if not rows:
        raise LogFileError(2, "campaign_id", "the file has no data rows")
    rows.sort(key=lambda r: (r[0], r[1]))
    report = np.asarray([r[6] for r in rows], dtype=np.float64).reshape(len(rows), len(reports))
    by_name = {name: report[:, i] for i, name in enumerate(reports)}
    return LoggedAdData(
        obs=np.asarray([r[2] for r in rows], dtype=np.float32), arm=np.asarray([r[3] for r in rows]),
        pscore=np.asarray([r[4] for r in rows]), reward=np.asarray([r[5] for r in rows], dtype=np.float64),
        num_audiences=num_audiences, setup=setup or LoggingSetup(),
        campaign=np.asarray([r[1] for r in rows]),
        impressions=by_name.get("impressions"), spend=by_name.get("spend"),
        conversions=by_name.get("conversions"), account=account,
    )


def write_user_logs(logs: LoggedAdData, path: str | Path) -> int:
    """Write `logs` in the file format (with the report columns when the logs carry them); returns the
    number of rows. A row's hour is its position among its campaign's rows."""
    campaign = logs.campaign if logs.campaign is not None else np.arange(logs.arm.shape[0])
    reports = {"impressions": logs.impressions, "spend": logs.spend, "conversions": logs.conversions}
    carried = {name: values for name, values in reports.items() if values is not None}
    hours: dict[int, int] = {}
    with Path(path).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS + tuple(carried))
        for i in range(logs.arm.shape[0]):
            owner = int(campaign[i])
            hour = hours.get(owner, 0)
            hours[owner] = hour + 1
            creative, audience = divmod(int(logs.arm[i]), logs.num_audiences)
            writer.writerow([f"c{owner}", hour, creative, audience, repr(float(logs.pscore[i])),
                             repr(float(logs.reward[i]))]
                            + [repr(float(v)) for v in logs.obs[i]]
                            + [repr(float(values[i])) for values in carried.values()])
    return int(logs.arm.shape[0])
