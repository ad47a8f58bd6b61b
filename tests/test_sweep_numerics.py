"""TF32 is a ``SweepConfig`` setting that ``run_sweep`` applies for the length of a sweep (so the
library and ``adv-align`` compute alike), and a folder attacked without it is not resumed with
it."""

import pytest
import torch
from builders import FAST_SWEEP as FAST
from builders import SWEEP_MODEL as MODEL
from builders import make_checkpoint, make_stimuli

from attacks_torch.sweep import ModelSpec, SweepConfig, SweepError, batches, run_sweep


def tf32_flags() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def test_numerics_sets_tf32_inside_the_block_and_restores_it_after():
    before = tf32_flags()
    for tf32 in (True, False):
        with SweepConfig(stimuli="x", tf32=tf32).numerics():
            assert tf32_flags() == (tf32, tf32)
        assert tf32_flags() == before


def test_run_sweep_attacks_under_the_configs_tf32_and_does_not_mix_it(tmp_path, monkeypatch):
    checkpoint = make_checkpoint(tmp_path)
    stimuli = make_stimuli(tmp_path, checkpoint, n=4)
    seen = []
    find_minimal = batches.find_minimal

    def recording(*args, **kwargs):
        seen.append(tf32_flags())
        return find_minimal(*args, **kwargs)

    monkeypatch.setattr(batches, "find_minimal", recording)
    spec = ModelSpec("convnext", MODEL, checkpoint)
    torch.set_num_threads(1)
    before = tf32_flags()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # a caller's
    try:
        outcomes = run_sweep([spec], SweepConfig(stimuli=stimuli, **FAST), tmp_path / "out")
        after = tf32_flags()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
    assert outcomes[0].status == "done", outcomes[0].error
    assert seen and set(seen) == {(False, False)}  # the default: fp32 means fp32
    assert after == (True, True)  # the caller's settings are back
    with pytest.raises(SweepError, match="tf32: unset -> True") as refused:
        run_sweep([spec], SweepConfig(stimuli=stimuli, tf32=True, **FAST), tmp_path / "out")
    assert "--fresh" in refused.value.render({"fresh": "--fresh"})
