"""`anomalyops drift check|list` and `log prune` through the real CLI entry point."""

from __future__ import annotations

import argparse
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from drift_log import log_rows, make_reference

from anomalyops.pipelines.cli.drift import duration
from anomalyops.pipelines.cli.main import main
from anomalyops.serving.predictions.log import PredictionLog, PredictionRecord


def test_duration():
    assert duration("30d") == 30 * 86400 and duration("90m") == 5400 and duration("1.5h") == 5400
    with pytest.raises(argparse.ArgumentTypeError, match="not a duration"):
        duration("tomorrow")


def test_drift_check_prints_where_and_exits_by_verdict(tmp_path, capsys):
    make_reference(tmp_path)
    log_db, out = tmp_path / "log.db", tmp_path / "drift"

    check = [
        "drift",
        "check",
        "--variant",
        "weld",
        "--log-db",
        str(log_db),
        "--reference",
        str(tmp_path),
        "--model-version",
        "4",
        "--out",
        str(out),
        "--window",
        "200",
        "--min-samples",
        "150",
    ]
    log_rows(log_db, 50, "4", seed=1)
    assert main(check) == 0
    assert "INSUFFICIENT DATA" in capsys.readouterr().out
    log_rows(log_db, 200, "4", seed=2)
    assert main(check) == 0
    printed = capsys.readouterr().out
    assert "NO DRIFT" in printed and "report: " in printed and "brightness" in printed
    log_rows(log_db, 200, "4", brightness=125.0, seed=3)
    assert main(check) == 1  # drifting
    printed = capsys.readouterr().out
    assert "weld: DRIFT:" in printed and "alert raised" in printed
    assert main(["drift", "list", "--variant", "weld", "--out", str(out)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len([line for line in listed if line.startswith("20")]) == 3
    assert "ALERT" in listed[-2] and listed[-1].strip().endswith("report.html")

    assert (
        main(
            [
                "drift",
                "check",
                "--variant",
                "weld",
                "--log-db",
                str(tmp_path / "no.db"),
                "--reference",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "no prediction log there" in capsys.readouterr().err


def test_log_prune_deletes_old_unreviewed_rows(tmp_path, capsys):
    log_db = tmp_path / "log.db"
    with PredictionLog(log_db) as log:
        old, reviewed = log.write(
            [PredictionRecord("weld", 1.0, 2.0, "good", 1.0, 1.0, 1.0) for _ in range(2)]
        )
        log.mark(reviewed, "false_alarm", "ana")
        # Age the rows: written now, they are made two months old.
        aged = (datetime.now(UTC) - timedelta(days=60)).isoformat()
        with sqlite3.connect(log_db) as db:
            db.execute("UPDATE predictions SET time = ?", (aged,))
        log.write([PredictionRecord("weld", 1.0, 2.0, "good", 1.0, 1.0, 1.0)])
    assert main(["log", "prune", "--log-db", str(log_db), "--older-than", "30d"]) == 0
    assert "deleted 1 unreviewed" in capsys.readouterr().out
    with PredictionLog(log_db) as log:
        assert log.count() == 2 and log.get(reviewed)["verdict"] == "false_alarm"
        with pytest.raises(KeyError):
            log.get(old)


@pytest.mark.parametrize(
    "command",
    [
        ["drift", "check", "--variant", "weld", "--reference", "REF", "--out", "OUT"],
        ["review", "list"],
        ["review", "mark", "1", "--verdict", "false_alarm", "--reviewer", "ana"],
        ["log", "prune", "--older-than", "30d"],
    ],
    ids=["drift-check", "review-list", "review-mark", "log-prune"],
)
def test_a_damaged_log_is_exit_2_naming_the_file(command, tmp_path, capsys):
    make_reference(tmp_path)
    log_db = tmp_path / "log.db"
    log_db.write_bytes(b"garbage, not SQLite" * 100)
    args = [str(tmp_path) if a == "REF" else str(tmp_path / "out") if a == "OUT" else a
            for a in command]  # fmt: skip
    assert main([*args, "--log-db", str(log_db)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"error: {log_db}: prediction log: cannot open it" in err


@pytest.mark.parametrize(
    ("flag", "value"), [("--sensitivity", "nan"), ("--sensitivity", "inf"), ("--variant", "Weld"),
                        ("--variant", "../../escaped")],
)  # fmt: skip
def test_drift_check_refuses_nan_settings_and_bad_variants(flag, value, tmp_path, capsys):
    make_reference(tmp_path)
    log_db, out = tmp_path / "log.db", tmp_path / "drift"
    with PredictionLog(log_db) as log:
        log.write([PredictionRecord("weld", 1.0, 2.0, "good", 1.0, 1.0, 1.0)])
    args = {"--variant": "weld", "--sensitivity": "5", flag: value}
    try:  # argparse refuses a bad --sensitivity itself (exit 2); the rest main returns
        code = main(["drift", "check", "--log-db", str(log_db), "--reference", str(tmp_path),
                     "--out", str(out), *[x for kv in args.items() for x in kv]])  # fmt: skip
    except SystemExit as stopped:
        code = stopped.code
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and ("finite" in err or "is invalid" in err), err
    assert not (tmp_path / "escaped").exists() and not out.exists()
