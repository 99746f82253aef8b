"""`anomalyops review list | mark | serve` on a real prediction log."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

import pytest

from anomalyops.pipelines.cli.main import main
from anomalyops.serving.ports import free_port
from anomalyops.serving.predictions.log import PredictionLog, PredictionRecord


@pytest.fixture
def log_db(tmp_path):
    path = tmp_path / "predictions.db"
    with PredictionLog(path) as log:
        log.write(
            [
                PredictionRecord("weld", 21.5, 10.0, "anomalous", 1, 1, 1, line="line-1"),
                PredictionRecord("weld", 2.0, 10.0, "good", 1, 1, 1, line="line-1"),
                PredictionRecord("weld", 31.0, 10.0, "anomalous", 1, 1, 1, line="line-2"),
            ]
        )
    return str(path)


def test_list_shows_flagged_predictions_with_filters(log_db, capsys):
    assert main(["review", "list", "--log-db", log_db]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "time", "variant", "line", "model_version", "score",
                                "threshold", "label", "verdict", "reviewer"]  # fmt: skip
    assert [line.split()[0] for line in lines[1:]] == ["3", "1"]  # flagged, newest first
    assert main(["review", "list", "--log-db", log_db, "--line", "line-1", "--label", "any"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == ["2", "1"]


def test_mark_stores_who_and_why_then_list_shows_it(log_db, capsys):
    args = ["review", "mark", "3", "--log-db", log_db, "--verdict", "false_alarm",
            "--reviewer", "ana", "--note", "glare on the lens"]  # fmt: skip
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("prediction 3 marked false_alarm by ana at 20")
    with PredictionLog(log_db) as log:
        row = log.get(3)
    assert (row["verdict"], row["reviewer"], row["verdict_note"]) == (
        "false_alarm", "ana", "glare on the lens"
    )  # fmt: skip
    assert main(["review", "list", "--log-db", log_db, "--verdict", "false_alarm"]) == 0
    [row_line] = capsys.readouterr().out.splitlines()[1:]
    assert row_line.split()[0] == "3" and row_line.split()[-2:] == ["false_alarm", "ana"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["mark", "99", "--verdict", "false_alarm", "--reviewer", "ana"], "no prediction with id"),
        (["mark", "1", "--verdict", "false_alarm", "--reviewer", " "], "reviewer must be"),
        (["list", "--since", "yesterday"], "since: Value error, expected an ISO date"),
        (["list", "--limit", "1000"], "limit: Input should be less than or equal to 100"),
    ],
)
def test_bad_input_is_a_one_line_error_exit_2(log_db, capsys, args, says):
    assert main(["review", args[0], "--log-db", log_db, *args[1:]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err and err.count("\n") == 1
    with PredictionLog(log_db) as log:
        assert log.reviewed("weld", "false_alarm") == []


def test_a_mistyped_log_path_is_an_error_not_a_new_log(tmp_path, capsys):
    missing = tmp_path / "typo.db"
    assert main(["review", "list", "--log-db", str(missing)]) == 2
    assert "no prediction log there" in capsys.readouterr().err and not missing.exists()


def test_serve_runs_the_review_page(log_db):
    port = free_port()
    command = [sys.executable, "-m", "anomalyops.pipelines.cli", "review", "serve",
               "--log-db", log_db, "--port", str(port), "--variant", "weld"]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as server:
        try:
            assert "review page on http://127.0.0.1:" in server.stdout.readline()
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
                        text = page.read().decode()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "review page did not answer"
                    time.sleep(0.2)
            assert text.count("<article") == 2 and 'value="weld"' in text
        finally:
            server.terminate()
            server.wait(10)


def test_control_characters_never_reach_the_terminal_or_the_log(tmp_path, capsys):
    """ESC colours text and a newline forges a row in `review list`; NUL and an RTL
    override hide what a note says: marks refuse them, listings escape them."""
    from anomalyops.serving.predictions.log import PredictionLog, PredictionRecord

    db = tmp_path / "log.db"
    with PredictionLog(db) as log:
        (number,) = log.write([PredictionRecord("weld", 9.0, 1.0, "anomalous", 1.0, 1.0, 1.0,
                                                line="L1\x1b[31m\n7  forged")])  # fmt: skip
    for reviewer, note in (("ana\x1b[31m", ""), ("ana", "ok\x00"), ("ana", "\u202egnp.")):
        code = main(["review", "mark", str(number), "--log-db", str(db), "--verdict",
                     "false_alarm", "--reviewer", reviewer, "--note", note])  # fmt: skip
        assert code == 2 and "control or formatting" in capsys.readouterr().err
    assert main(["review", "list", "--log-db", str(db), "--label", "any"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b[31m\\n7  forged" in out
    assert len(out.strip().splitlines()) == 2  # the header and one row, nothing forged


def test_serve_reads_kept_images_from_the_named_file_store(tmp_path, monkeypatch):
    """A shared log's images live apart from it (a bucket on a cluster): `--log-files`,
    or ANOMALYOPS_PREDICTION_FILES as the chart sets it, names the store."""
    import io

    from PIL import Image

    from anomalyops.serving.predictions.log import PredictionLog, PredictionRecord

    png = io.BytesIO()
    Image.new("L", (8, 8), 200).save(png, format="PNG")
    db, store = tmp_path / "log.db", tmp_path / "elsewhere"
    with PredictionLog(db, store) as log:
        (number,) = log.write([PredictionRecord("weld", 9.0, 1.0, "anomalous", 1, 1, 1,
                                                image=png.getvalue())])  # fmt: skip
    for how in ("flag", "env"):
        port = free_port()
        command = [sys.executable, "-m", "anomalyops.pipelines.cli", "review", "serve",
                   "--log-db", str(db), "--port", str(port)]  # fmt: skip
        env = dict(__import__("os").environ)
        if how == "flag":
            command += ["--log-files", str(store)]
        else:
            env["ANOMALYOPS_PREDICTION_FILES"] = str(store)
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as server:
            try:
                assert "review page on" in server.stdout.readline()
                url = f"http://127.0.0.1:{port}/predictions/{number}/image.png"
                deadline = time.monotonic() + 30
                while True:
                    try:
                        with urllib.request.urlopen(url, timeout=5) as answer:
                            assert answer.status == 200, how
                            assert Image.open(io.BytesIO(answer.read())).size == (8, 8)
                        break
                    except OSError:
                        assert time.monotonic() < deadline, f"no image ({how})"
                        time.sleep(0.2)
            finally:
                server.terminate()
                server.wait(10)
