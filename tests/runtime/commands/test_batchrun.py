"""The batch-run sequence shared by lpips-score, lpips-video and lpips-score --ray."""
import pytest

from lpips_runtime.commands.batchrun import EXIT_ITEMS_FAILED, EXIT_OK, BatchRun
from lpips_runtime.commands.common import EXIT_INTERRUPTED
from lpips_runtime.errors import LpipsError, error_text, first_line


class _Closing:
    def __init__(self, fail: bool = False):
        self.closed, self.fail = 0, fail

    def close(self):
        self.closed += 1
        if self.fail:
            raise LpipsError("disk full")


def test_a_finished_run_says_its_summary_and_exits_by_its_failures(capsys):
    run = BatchRun("out.csv").start(5, already=3)
    writer = _Closing()
    with run.scoring(writer):
        for _ in range(5):
            run.update()
    assert writer.closed == 1 and not run.interrupted
    assert run.finish(["n=5 mean=0.1"], failures=0) == EXIT_OK
    assert run.finish([], failures=2) == EXIT_ITEMS_FAILED
    err = capsys.readouterr().err
    assert "resuming out.csv: 3 pairs already there, 5 to go" in err and "n=5 mean=0.1" in err


def test_ctrl_c_stops_the_loop_closes_what_was_written_and_says_how_to_finish(capsys):
    run = BatchRun("frames.csv", unit="frames").start(None)
    writer = _Closing()
    with run.scoring(writer):
        run.update(2)
        raise KeyboardInterrupt
    assert run.interrupted and writer.closed == 1
    assert run.finish(["not shown"]) == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert err.strip() == "interrupted after 2 frames; rerun with --resume to finish frames.csv"
    stdout_run = BatchRun(None).start(4)
    with stdout_run.scoring():
        raise KeyboardInterrupt
    stdout_run.finish()
    assert capsys.readouterr().err.strip() == "interrupted after 0 of 4 pairs"  # stdout cannot be resumed


def test_an_error_closes_quietly_and_goes_on_up():
    run = BatchRun("out.csv", quiet=True).start(3)
    writer = _Closing(fail=True)
    with pytest.raises(OSError, match="stdout closed"):  # the first error is the one reported
        with run.scoring(writer):
            raise OSError("stdout closed")
    assert writer.closed == 1
    with pytest.raises(LpipsError, match="disk full"):  # after a clean loop, closing may fail the run
        with run.scoring(_Closing(fail=True)):
            pass


def test_quiet_runs_say_nothing_but_the_interruption(capsys):
    run = BatchRun("out.csv", quiet=True).start(2, already=1)
    with run.scoring():
        run.update()
    assert run.finish(["summary"]) == EXIT_OK and capsys.readouterr().err == ""


def test_the_first_line_of_an_exception():
    assert first_line(RuntimeError("  ONNX Runtime says\nmore\n")) == "ONNX Runtime says"
    assert first_line(ValueError()) == "ValueError"
    assert error_text(ValueError("bad\nvalue")) == "ValueError: bad"
    assert error_text(ValueError("")) == "ValueError"
    assert error_text(LpipsError("one line that names the fix")) == "one line that names the fix"
