"""Shared fixtures: tiny dictionaries, SentencePiece models and corpora built in a temp dir."""

import os

import pytest

# Keep every test single-threaded: CI has 2 cores and runs 2 pytest workers.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def tmp_dir(tmp_path):
    return tmp_path
