"""Checkpoints load with weights_only=True; a pickle that smuggles a callable is refused."""

import os
import pickle
import zipfile

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


def _fairseq_state():
    import argparse

    return {"args": argparse.Namespace(arch="xlmr_debug"), "model": {"w": torch.randn(64, 64), "b": torch.randn(64)},
            "extra_state": {"epoch": 1}}


@pytest.mark.parametrize("legacy", [False, True])
def test_cut_short_checkpoint_names_the_file_and_the_fix(tmp_path, legacy):
    """A checkpoint_last.pt cut short by a killed copy: our error, for any cut, from both loaders."""
    whole = tmp_path / "checkpoint_1_10.pt"  # the intact one before it
    torch.save(_fairseq_state(), whole)
    last = tmp_path / "checkpoint_last.pt"
    torch.save(_fairseq_state(), last, _use_new_zipfile_serialization=not legacy)  # legacy: the 2019 XLM-R files
    data = last.read_bytes()
    for cut in (0, 1, 40, 600, len(data) // 2, len(data) - 1):  # PyTorch: EOF, zip, OSError, pickle errors
        last.write_bytes(data[:cut])
        for loader in (checkpoint.load, checkpoint_utils.load_checkpoint_to_cpu):
            with pytest.raises(checkpoint.DamagedCheckpointError) as err:
                loader(str(last))
            message = str(err.value)
            assert message.startswith(f"checkpoint {last} is incomplete or damaged: "), (cut, message)
            if cut and not legacy:
                assert f"its zip archive stops after {cut:,} byte(s), before its central directory" in message
            assert f"--restore-file {whole}" in message and "\n" not in message, (cut, message)


def test_corrupted_or_foreign_file_is_damaged_not_unsafe(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(_fairseq_state(), path)
    with zipfile.ZipFile(path) as archive:
        offset = next(i for i in archive.infolist() if i.filename.endswith("data.pkl")).header_offset
    data = bytearray(path.read_bytes())
    data[data.index(b"\x80\x02", offset) + 10] ^= 0xFF  # one flipped byte in the pickle (data.pkl)
    path.write_bytes(bytes(data))
    with pytest.raises(checkpoint.DamagedCheckpointError, match=r"fails its CRC check.*Fix: copy or download it again"):
        checkpoint.load(path)
    path.write_text("<!DOCTYPE html><html>Not Found</html>")  # what a failed download may leave
    with pytest.raises(checkpoint.DamagedCheckpointError, match=r"starts with b'<!DO', neither a zip archive"):
        checkpoint_utils.load_checkpoint_to_cpu(str(path))
    with pytest.raises(FileNotFoundError):  # a missing file keeps PyTorch's own error
        checkpoint.load(tmp_path / "missing.pt")


def test_fairseq_train_resume_from_a_cut_short_checkpoint_last(tmp_path):
    from tests.fixtures.fairseq_run import USER_DIR, fairseq_train, tiny_model_args
    from tests.fixtures.tiny_bin import make_tiny_data_bin

    make_tiny_data_bin(tmp_path / "bin", ["en"], {"en": 20})
    save_dir = tmp_path / "run"
    save_dir.mkdir()
    torch.save(_fairseq_state(), save_dir / "checkpoint_last.pt")
    data = (save_dir / "checkpoint_last.pt").read_bytes()
    (save_dir / "checkpoint_last.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(checkpoint.DamagedCheckpointError, match=r"checkpoint_last.pt is incomplete or damaged: its zip "
                                                                r"archive stops after .* Fix: copy or download"):
        fairseq_train([tmp_path / "bin", "--user-dir", USER_DIR, "--task", "xlmr_mlm", "--criterion", "xlmr_mlm",
                       *tiny_model_args(), "--max-update", "1", "--save-dir", save_dir])
