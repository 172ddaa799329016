import io
import re

import pytest

from sagedet.sagemaker.metrics_log import METRIC_DEFINITIONS, MetricsLogger

REGEX = {definition["Name"]: definition["Regex"] for definition in METRIC_DEFINITIONS}


def captured(regex_name, text):
    """The value SageMaker would record for this metric from the log text."""
    match = re.search(REGEX[regex_name], text)
    assert match, f"{regex_name} not found in {text!r}"
    return float(match.group(1))


@pytest.fixture
def log():
    stream = io.StringIO()
    return MetricsLogger("algo-1", stream), stream


def test_the_five_definitions_are_the_builtin_ones():
    assert REGEX == {
        "train:cross_entropy":
            r"#quality_metric: host=\S+, epoch=\S+, batch=\S+ train cross_entropy <loss>=(\S+)",
        "train:smooth_l1":
            r"#quality_metric: host=\S+, epoch=\S+, batch=\S+ train smooth_l1 <loss>=(\S+)",
        "validation:mAP":
            r"#quality_metric: host=\S+, epoch=\S+, validation mAP <score>=\((\S+)\)",
        "train:throughput":
            r"#throughput_metric: host=\S+, train throughput=(\S+) records/second",
        "train:progress": r"#progress_metric: host=\S+, completed (\S+) %",
    }


def test_train_loss_lines(log):
    logger, stream = log
    logger.train_loss(epoch=3, batch=100, cross_entropy=1.23, smooth_l1=0.45)
    assert stream.getvalue() == (
        "#quality_metric: host=algo-1, epoch=3, batch=100 train cross_entropy <loss>=1.23\n"
        "#quality_metric: host=algo-1, epoch=3, batch=100 train smooth_l1 <loss>=0.45\n"
    )
    assert captured("train:cross_entropy", stream.getvalue()) == 1.23
    assert captured("train:smooth_l1", stream.getvalue()) == 0.45


def test_validation_map_line(log):
    logger, stream = log
    logger.validation_map(epoch=0, map_=0.71)
    line = "#quality_metric: host=algo-1, epoch=0, validation mAP <score>=(0.71)\n"
    assert stream.getvalue() == line
    assert captured("validation:mAP", stream.getvalue()) == 0.71


def test_throughput_line(log):
    logger, stream = log
    logger.throughput(123.4)
    line = "#throughput_metric: host=algo-1, train throughput=123.4 records/second\n"
    assert stream.getvalue() == line
    assert captured("train:throughput", stream.getvalue()) == 123.4


@pytest.mark.parametrize(
    ("percent", "shown"), [(40, "40"), (12.5, "12.5"), (33.333, "33.3"), (100.0, "100")]
)
def test_progress_line(log, percent, shown):
    logger, stream = log
    logger.progress(percent)
    assert stream.getvalue() == f"#progress_metric: host=algo-1, completed {shown} %\n"
    assert captured("train:progress", stream.getvalue()) == float(shown)


@pytest.mark.parametrize("value", [0.123456789, 1234567.0, 1e-7, 0.0, 2.0 / 3.0])
def test_values_keep_six_significant_digits(log, value):
    logger, stream = log
    logger.train_loss(0, 0, value, value)
    logger.validation_map(0, value)
    logger.throughput(value)
    text = stream.getvalue()
    expected = float(f"{value:.6g}")
    for name in ("train:cross_entropy", "train:smooth_l1", "validation:mAP", "train:throughput"):
        assert captured(name, text) == pytest.approx(value, rel=1e-5)
        assert captured(name, text) == expected


def test_every_metric_found_in_one_mixed_log(log):
    """As SageMaker sees it: all lines interleaved with other output."""
    logger, stream = log
    stream.write("INFO starting\n")
    logger.progress(10)
    logger.train_loss(2, 7, 2.5, 0.75)
    stream.write("some other line\n")
    logger.throughput(88.25)
    logger.validation_map(2, 0.5625)
    values = {name: captured(name, stream.getvalue()) for name in REGEX}
    assert values == {
        "train:cross_entropy": 2.5,
        "train:smooth_l1": 0.75,
        "validation:mAP": 0.5625,
        "train:throughput": 88.25,
        "train:progress": 10.0,
    }


def test_host_name_from_local_mode():
    stream = io.StringIO()
    MetricsLogger("algo-2-x7k2p", stream).validation_map(4, 0.5)
    assert captured("validation:mAP", stream.getvalue()) == 0.5
    assert "host=algo-2-x7k2p, epoch=4," in stream.getvalue()


def test_each_line_is_written_whole_and_flushed():
    class Stream(io.StringIO):
        def __init__(self):
            super().__init__()
            self.events = []

        def write(self, text):
            self.events.append(text)
            return super().write(text)

        def flush(self):
            self.events.append("<flush>")

    stream = Stream()
    MetricsLogger("algo-1", stream).train_loss(0, 1, 0.5, 0.25)
    assert stream.events[1::2] == ["<flush>", "<flush>"]
    assert all(event.endswith("\n") for event in stream.events[0::2])


def test_default_stream_is_stdout(capsys):
    MetricsLogger("algo-1").progress(50)
    assert capsys.readouterr().out == "#progress_metric: host=algo-1, completed 50 %\n"
