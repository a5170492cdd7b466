"""A user's log file: read when valid, refused with the bad line and column when not."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from gaelp.sim.historical.user_logs import COLUMNS, LogFileError, load_user_logs


def write(path: Path, rows: list[dict[str, object]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def row(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {"campaign_id": "c1", "hour": 0, "creative": 1, "audience": 2,
                               "propensity": 1 / 15, "clicks": 3}
    base |= {f"obs_{i}": 0.5 for i in range(128)}
    return base | changes


def test_a_valid_file_becomes_logged_data(tmp_path: Path) -> None:
    logs = load_user_logs(write(tmp_path / "logs.csv", [row(), row(hour=1, creative=2, audience=0)]), 5)
    assert logs.obs.shape == (2, 128)
    assert list(logs.arm) == [1 * 5 + 2, 2 * 5 + 0]
    assert list(logs.reward) == [3.0, 3.0]


@pytest.mark.parametrize(("bad", "column"), [
    ({"propensity": 0.0}, "propensity"), ({"creative": 3}, "creative"), ({"audience": 5}, "audience"),
    ({"clicks": -1}, "clicks"), ({"obs_7": "nan"}, "obs_7"), ({"hour": "x"}, "hour"), ({"campaign_id": ""},
                                                                                          "campaign_id"),
])
def test_a_bad_value_names_its_line_and_column(tmp_path: Path, bad: dict[str, object], column: str) -> None:
    path = write(tmp_path / "logs.csv", [row(), row(), row(**bad)])
    with pytest.raises(LogFileError) as error:
        load_user_logs(path, 5)
    assert (error.value.line, error.value.column) == (4, column)
