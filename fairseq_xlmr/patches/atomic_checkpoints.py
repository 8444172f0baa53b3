"""Replaces `fairseq.checkpoint_utils.torch_persistent_save` and the `PathManager` that checkpoint_utils copies
with (checked on ve-fairseq 0.12.3): every checkpoint file is written whole or not at all.

fairseq writes the first file of a save to `<name>.tmp` and renames it (no fsync), then *copies* it to the
other names in place: checkpoint_last.pt is usually such a copy, so a process killed during the copy leaves a
truncated checkpoint_last.pt and the next run crashes on it instead of resuming. Every checkpoint write and
copy now goes to `<name>.tmp`, is fsynced, and replaces the target with os.replace (then the directory is
fsynced): `fairseq_xlmr.files.write_atomic(..., durable=True)`.
"""

import os
import shutil

import torch
from fairseq import checkpoint_utils
from fairseq.file_io import PathManager

from fairseq_xlmr.files import write_atomic
from fairseq_xlmr.patches.wrapping import replace


def _is_local(*paths) -> bool:
    return not any(PathManager.path_requires_pathmanager(p) for p in paths)


class AtomicCopyPathManager(PathManager):
    """fairseq's PathManager whose `copy` (checkpoint_last.pt, checkpoint_best.pt, ...) is atomic."""

    @staticmethod
    def copy(src_path: str, dst_path: str, overwrite: bool = False) -> bool:
        if not _is_local(src_path, dst_path):
            return PathManager.copy(src_path, dst_path, overwrite)
        if not overwrite and os.path.exists(dst_path):
            return False
        write_atomic(dst_path, lambda tmp: shutil.copyfile(src_path, tmp), durable=True)
        return True


def atomic_save(torch_persistent_save):
    def wrapper(obj, filename, async_write: bool = False):
        if async_write or not isinstance(filename, str) or not _is_local(filename):
            return torch_persistent_save(obj, filename, async_write=async_write)
        write_atomic(filename, lambda tmp: torch.save(obj, tmp), durable=True)

    return wrapper


def apply() -> None:
    replace(checkpoint_utils, "torch_persistent_save", atomic_save)
    replace(checkpoint_utils, "PathManager", lambda _: AtomicCopyPathManager)
