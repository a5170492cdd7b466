"""A user's log file: read when valid, refused with the bad line and column when not."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from gaelp.cli.main import main
from gaelp.sim.historical.ad_logs import generate_ad_logs
from gaelp.sim.historical.calibration import calibration_blocker
from gaelp.sim.historical.user_logs import (
    COLUMNS,
    REPORT_COLUMNS,
    LogFileError,
    load_user_logs,
    write_user_logs,
)
from gaelp.sim.platform.sandbox_market import sandbox_market_config


def write(path: Path, rows: list[dict[str, object]], extra: tuple[str, ...] = ()) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS + extra)
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
    path = write(tmp_path / "logs.csv", [row(), row(hour=1), row(**({"hour": 2} | bad))])
    with pytest.raises(LogFileError) as error:
        load_user_logs(path, 5)
    assert (error.value.line, error.value.column) == (4, column)


def test_rows_in_any_order_come_back_hour_by_hour_with_the_reports(tmp_path: Path) -> None:
    reports = {"impressions": 100, "spend": 2.5, "conversions": 1}
    rows = [row(campaign_id=campaign, hour=hour, clicks=clicks, **reports)
            for campaign, hour, clicks in (("b", 1, 4), ("a", 1, 2), ("b", 0, 3), ("a", 0, 1))]
    logs = load_user_logs(write(tmp_path / "logs.csv", rows, REPORT_COLUMNS), 5)
    assert list(logs.reward) == [3.0, 1.0, 4.0, 2.0]  # hour 0 (b, a in file order), then hour 1
    assert logs.campaign is not None and list(logs.campaign) == [0, 1, 0, 1]
    assert logs.impressions is not None and list(logs.impressions) == [100.0] * 4


def test_a_campaign_hour_given_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LogFileError) as error:
        load_user_logs(write(tmp_path / "logs.csv", [row(), row(hour=1), row()]), 5)
    assert (error.value.line, error.value.column) == (4, "hour")
    assert "line 2" in str(error.value)


def test_the_report_columns_go_together(tmp_path: Path) -> None:
    path = write(tmp_path / "logs.csv", [row(impressions=10, spend=1.0)], ("impressions", "spend"))
    with pytest.raises(LogFileError) as error:
        load_user_logs(path, 5)
    assert (error.value.line, error.value.column) == (1, "conversions")


def test_a_negative_report_names_its_line_and_column(tmp_path: Path) -> None:
    rows = [row(impressions=10, spend=1.0, conversions=0),
            row(hour=1, impressions=10, spend=-1.0, conversions=0)]
    with pytest.raises(LogFileError) as error:
        load_user_logs(write(tmp_path / "logs.csv", rows, REPORT_COLUMNS), 5)
    assert (error.value.line, error.value.column) == (3, "spend")


def test_written_logs_read_back_unchanged(tmp_path: Path) -> None:
    logs = generate_ad_logs(sandbox_market_config(), num_campaigns=4, days=1, seed=2)
    write_user_logs(logs, tmp_path / "logs.csv")
    back = load_user_logs(tmp_path / "logs.csv", logs.num_audiences, logs.setup, logs.account)
    for name in ("obs", "arm", "pscore", "reward", "campaign", "impressions", "spend", "conversions"):
        assert np.array_equal(getattr(back, name), getattr(logs, name)), name
    assert calibration_blocker(back) is None
    assert calibration_blocker(dataclasses.replace(back, spend=None)) is not None
    assert calibration_blocker(dataclasses.replace(back, arm=back.arm[:-4], obs=back.obs[:-4],
                                                   campaign=back.campaign[:-4])) is not None


def test_the_cli_exports_the_sandbox_logs_and_checks_a_file(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    exported = tmp_path / "sandbox.csv"
    assert main(["historical", "export-sandbox-logs", str(exported), "--campaigns", "4", "--days", "1"]) == 0
    assert main(["historical", "check", str(exported)]) == 0
    out = capsys.readouterr().out
    assert "96 rows, 4 campaigns" in out and "calibration: possible" in out
    bad = write(tmp_path / "bad.csv", [row(), row(hour=1, propensity=2)])
    assert main(["historical", "check", str(bad)]) == 1
    assert "line 3, column 'propensity'" in capsys.readouterr().err
