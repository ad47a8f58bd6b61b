"""Run errors whose message is built after the ``except`` block that caught the cause: the cause's
text must have been bound before Python unbinds the exception name at the end of that block."""

import json

import pytest

from harmonization.training.build import check_model
from harmonization.training.config import TrainConfig
from harmonization.training.errors import ConfigError
from harmonization.training.resume import RunFolder
from harmonization.training.run import _read_summary


def test_an_unknown_timm_name_is_named_in_the_message():
    config = TrainConfig(model="timm:no_such_network_xyz", train="t", val="v", out="o", epochs=1)
    with pytest.raises(ConfigError) as refused:
        check_model(config)
    message = refused.value.message()
    assert "no_such_network_xyz" in message and "\n" not in message


def test_an_unreadable_summary_of_a_complete_run_is_named(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.prepare()
    folder.summary_path.write_text("{not json")
    with pytest.raises(ConfigError) as refused:
        _read_summary(folder)
    assert "summary" in refused.value.message() and "JSONDecodeError" in refused.value.message()


def test_an_unreadable_history_is_named(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.prepare()
    folder.history_path.write_bytes(b"epoch,loss\nnot-a-number,\x00\n")
    with pytest.raises(ConfigError) as refused:
        folder.read_history()
    assert str(folder.history_path) in refused.value.message()
    json.dumps(refused.value.message())  # a plain string
