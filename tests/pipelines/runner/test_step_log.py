"""The console of a local run: a line per step, the full output in the log file, the
failing step's own error kept."""

import io

from anomalyops.pipelines.runner.step_log import StepLog

# What kfp.local writes (kfp/local/task_dispatcher.py), colours included.
KFP_OUTPUT = (
    "10:00:00.001 - INFO - Executing task \x1b[96m'train-component'\x1b[0m\n"
    "10:00:00.002 - INFO - Streamed logs:\n\n"
    "    fitting 210 images\n"
    "10:00:01.000 - INFO - Task \x1b[96m'train-component'\x1b[0m finished with status "
    "\x1b[92mSUCCESS\x1b[0m\n"
    "10:00:01.001 - INFO - Task 'train-component' outputs:\n    model: Model( name='model' )\n"
    "10:00:01.100 - INFO - Executing task 'evaluate-component'\n"
    "    Traceback (most recent call last):\n"
    "    anomalyops.components.data.validate.ValidationError: 3 hard failures\n"
    "      bad.png: blank frame\n"
    "10:00:02.000 - ERROR - Task 'evaluate-component' finished with status FAILURE\n"
)


def test_console_gets_one_line_per_step_and_the_file_everything(tmp_path):
    console = io.StringIO()
    log = StepLog(console, tmp_path / "logs" / "run.log")
    log.write(KFP_OUTPUT[:40])  # kfp writes in pieces: lines are put together first
    log.write(KFP_OUTPUT[40:])
    log.close()
    lines = console.getvalue().splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["train", "started"], ["train", "success"],
        ["evaluate", "started"], ["evaluate", "failure"],
    ]  # fmt: skip
    assert (tmp_path / "logs" / "run.log").read_text() == KFP_OUTPUT
    assert log.step_error() == "ValidationError: 3 hard failures\n  bad.png: blank frame"


def test_without_a_log_file_everything_reaches_the_console():
    console = io.StringIO()
    log = StepLog(console)
    log.write(KFP_OUTPUT)
    assert console.getvalue() == KFP_OUTPUT
