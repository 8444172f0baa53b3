"""fairseq-train with an unknown `--arch xlmr_*` names the plugin's architectures, not fairseq's ~160."""

import pytest

from tests.fixtures.fairseq_run import USER_DIR, fairseq_train
from tests.fixtures.tiny_bin import make_tiny_data_bin


def _train_error(tmp_path, capsys, arch):
    make_tiny_data_bin(tmp_path / "bin", ["en"], {"en": 10})
    with pytest.raises(SystemExit) as exit_info:
        fairseq_train([tmp_path / "bin", "--user-dir", USER_DIR, "--task", "xlmr_mlm", "--arch", arch, "--cpu"])
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_unknown_xlmr_arch_lists_the_plugin_architectures(tmp_path, capsys):
    error = _train_error(tmp_path, capsys, "xlmr_nonexistent")
    assert error == ("fairseq-train: error: argument --arch/-a: unknown architecture 'xlmr_nonexistent'; "
                     "fairseq_xlmr's are xlmr_base, xlmr_debug, xlmr_large, xlmr_xl, xlmr_xxl "
                     "(xlmr_debug: the tiny one for CPU runs).")


def test_other_unknown_arch_keeps_fairseq_error(tmp_path, capsys):
    error = _train_error(tmp_path, capsys, "nonexistent")
    assert "invalid choice: 'nonexistent' (choose from 'transformer_tiny'" in error and "'xlmr_debug'" in error
