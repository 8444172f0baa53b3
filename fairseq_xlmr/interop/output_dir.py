"""All-or-nothing output directories for the interop commands (write to a temp dir, then rename)."""

import contextlib
import os
import shutil
from pathlib import Path

from fairseq_xlmr.atomic import replace_dir


def check_output_dir(out_dir, overwrite: bool) -> None:
    """Refuse a non-empty `out_dir` unless `overwrite`, before any long work starts."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"output {out_dir} exists and is not a directory; pass a directory path.")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"output directory {out_dir} exists and is not empty; pass --overwrite to "
                              "replace it, or choose a new directory.")


@contextlib.contextmanager
def atomic_output_dir(out_dir, overwrite: bool = False):
    """Yield a temp dir beside `out_dir`; on success it becomes `out_dir`, on error it is removed.

    Readers of `out_dir` see the old contents or the new ones, never a half-written mix.
    """
    out_dir = Path(out_dir)
    check_output_dir(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f"{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)  # left over by a killed run of this same process id
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, out_dir)
