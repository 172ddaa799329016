import pytest

from sagedet.errors import ConfigError, DataError
from sagedet.sagemaker.failure import clear_failure, run_with_failure_file, write_failure
from sagedet.sagemaker.paths import SageMakerPaths


@pytest.fixture
def paths(tmp_path):
    return SageMakerPaths(tmp_path / "opt_ml")


def test_write_failure_creates_folders_and_keeps_full_text(paths):
    reason = "hyperparameter 'epochs'='x': expected an integer >= 1\n" + "detail " * 500
    write_failure(paths, reason)
    assert paths.failure_file == paths.root / "output" / "failure"
    assert paths.failure_file.read_text() == reason


def test_clear_failure(paths):
    clear_failure(paths)  # nothing to remove: no error
    write_failure(paths, "stale")
    clear_failure(paths)
    assert not paths.failure_file.exists()


def test_success_returns_zero_and_writes_nothing(paths):
    assert run_with_failure_file(paths, lambda: None) == 0
    assert not paths.failure_file.exists()


def test_returned_exit_code(paths):
    assert run_with_failure_file(paths, lambda: 3) == 3


def test_sagedet_error_exits_1_with_its_message(paths, capsys):
    def fail():
        raise DataError("annotation a.json: class_id 7 >= num_classes 3")

    assert run_with_failure_file(paths, fail) == 1
    assert paths.failure_file.read_text() == "annotation a.json: class_id 7 >= num_classes 3"
    assert "class_id 7 >= num_classes 3" in capsys.readouterr().err


def test_internal_error_exits_2_with_traceback(paths, capsys):
    def fail():
        raise ZeroDivisionError("division by zero")

    assert run_with_failure_file(paths, fail) == 2
    text = paths.failure_file.read_text()
    assert text.startswith("Internal error: ZeroDivisionError: division by zero\n")
    assert "Traceback (most recent call last)" in text
    assert "in fail" in text
    assert text in capsys.readouterr().err


def test_keyboard_interrupt_exits_130(paths):
    def stop():
        raise KeyboardInterrupt

    assert run_with_failure_file(paths, stop) == 130


def test_unwritable_failure_file_still_reports(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    paths = SageMakerPaths(blocker)  # output/ cannot be created under a file

    def fail():
        raise ConfigError("bad")

    assert run_with_failure_file(paths, fail) == 1
    err = capsys.readouterr().err
    assert err.startswith("bad\n")
    assert "cannot write" in err
