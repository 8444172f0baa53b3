"""Checkpoints load with weights_only=True; a pickle that smuggles a callable is refused."""

import os
import pickle

import pytest
import torch
from fairseq import checkpoint_utils

from fairseq_xlmr import checkpoint


class _RunsAShellCommand:
    """Unpickling this would call os.system: what a poisoned checkpoint does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def poisoned(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint_last.pt"
    torch.save({"model": {"w": torch.ones(2)}, "extra": _RunsAShellCommand(marker)}, path)
    return str(path), marker


def test_checkpoint_with_a_callable_is_refused_with_a_clear_error(poisoned):
    path, marker = poisoned
    with pytest.raises(checkpoint.UnsafeCheckpointError) as err:
        checkpoint.load(path)
    message = str(err.value)
    assert path in message and "system" in message and "add_safe_globals" in message
    assert not marker.exists()  # the command never ran


def test_fairseq_own_loader_refuses_it_too(poisoned):
    path, marker = poisoned
    with pytest.raises(checkpoint.UnsafeCheckpointError, match="refusing to load checkpoint"):
        checkpoint_utils.load_checkpoint_to_cpu(path)
    assert not marker.exists()
    assert isinstance(checkpoint.UnsafeCheckpointError("x"), pickle.UnpicklingError)


def test_fairseq_style_checkpoint_with_namespace_and_numpy_loads(tmp_path):
    import argparse

    import numpy as np

    path = tmp_path / "model.pt"
    state = {"args": argparse.Namespace(arch="roberta_base", encoder_layers=12),
             "extra_state": {"val_loss": np.float64(1.5), "best": np.float32(2.0)},
             "model": {"w": torch.arange(3)}}
    torch.save(state, path)
    loaded = checkpoint.load(str(path))
    assert loaded["args"].arch == "roberta_base"
    assert loaded["extra_state"]["val_loss"] == 1.5
    assert torch.equal(loaded["model"]["w"], torch.arange(3))
