"""Writes that a killed run cannot leave half-done: a temp file or directory, then os.replace."""

import os
import shutil
from pathlib import Path
from typing import Union


def write_atomic(path: Path, data: Union[str, bytes]) -> None:
    """Write `data` (text as UTF-8) to `path` via `<path>.tmp-<pid>` + os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    os.replace(tmp, path)


def replace_dir(tmp: Path, dest: Path) -> None:
    """Move the finished directory `tmp` to `dest`; an old `dest` is removed only after the new
    one is in place, so readers see the old contents or the new ones, never a mix."""
    old = None
    if dest.exists() and any(dest.iterdir()):
        old = dest.with_name(f"{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
    elif dest.exists():
        dest.rmdir()
    os.replace(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
