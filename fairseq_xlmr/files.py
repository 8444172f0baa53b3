"""File names, readers and writers that the whole package shares: one home for each.

Light on purpose (standard library only): the `xlmr` command imports it to print its help.
"""

import argparse
import contextlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union

logger = logging.getLogger(__name__)

# A model directory (an XLM-R release, `make demo`'s release/, `xlmr import-hf` output) holds these three.
CHECKPOINT_FILE = "model.pt"
DICT_FILE = "dict.txt"
SPM_FILE = "sentencepiece.bpe.model"  # XLM-R's name for it, although the model is a unigram LM
MODEL_DIR_FILES = (CHECKPOINT_FILE, DICT_FILE, SPM_FILE)

ENCODINGS = ("auto", "utf-8", "latin-1")


# --------------------------------------------------------------------------- comma lists


def parse_list(value: str, field: str, choices: Optional[Sequence[str]] = None) -> List[str]:
    """'en, de,ru' -> ['en', 'de', 'ru']: items stripped, empty ones dropped, order kept.

    One rule for every comma list of the package (languages, pairs, sources): an item named twice is an
    error (it is a typo more often than a wish to weigh a language twice), as is an empty list or, with
    `choices`, an item outside them. `field` is how the user wrote the option (`task.languages`, `--pairs`).
    """
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        raise ValueError(f"`{field}` is empty; give a comma-separated list (e.g. {','.join(choices or ['en', 'de'])}).")
    repeated = sorted({item for item in items if items.count(item) > 1})
    if repeated:
        raise ValueError(f"`{field}` lists {', '.join(repeated)} more than once: {value!r}.")
    if choices is not None:
        unknown = [item for item in items if item not in choices]
        if unknown:
            raise ValueError(f"`{field}` must be a comma list of {', '.join(choices)}; got {unknown[0]!r}. "
                             f"Example: {field} {','.join(choices[:2])}")
    return items


def list_option(field: str, choices: Optional[Sequence[str]] = None) -> Callable[[str], List[str]]:
    """`parse_list` as an argparse `type`: its message becomes argparse's usage error."""

    def parse(value: str) -> List[str]:
        try:
            return parse_list(value, field, choices)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


# --------------------------------------------------------------------------- readers


def read_lines(path, encoding: str = "auto") -> List[str]:
    """The lines of `path` without line endings (no empty last line for a file ending in a newline).

    Only "\\n" ends a line: str.splitlines() would also split at U+0085 and U+2028, which occur inside
    Latin-1/Windows text and would cut a sentence in two (and shift the alignment of parallel files).
    encoding "auto" reads UTF-8 and falls back to Latin-1 when the file is not valid UTF-8: the
    CoNLL-2002 es/nl distributions are Latin-1, and decoding them as UTF-8 fails on the first "ñ".
    Latin-1 decodes any byte, so the fallback never fails (a mis-encoded UTF-8 file would show as
    mojibake, which is why "auto" tries UTF-8 first). A UTF-8 byte-order mark is dropped.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist")
    data = path.read_bytes()
    if encoding in ("auto", "utf-8"):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            if encoding == "utf-8":
                raise ValueError(f"{str(path)!r} is not valid UTF-8 ({error}); pass encoding 'latin-1' "
                                 "(CoNLL-2002 es/nl) or 'auto'.") from error
            logger.info("%s is not valid UTF-8; reading it as Latin-1", path)
            text = data.decode("latin-1")
    else:
        text = data.decode("latin-1")
    lines = text[:-1].split("\n") if text.endswith("\n") else text.split("\n")
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_muse(path) -> List[Tuple[str, str]]:
    """A MUSE bilingual dictionary, `source target` per line (space or tab), as pairs in file order.

    Blank lines are skipped; any other line without exactly two fields is an error naming the line.
    """
    pairs = []
    for number, line in enumerate(read_lines(path, "utf-8"), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"{path}:{number}: a MUSE dictionary line is `source target`, got {line!r}.")
        pairs.append((fields[0], fields[1]))
    return pairs


# --------------------------------------------------------------------------- writers


def write_atomic(path, data: Union[str, bytes, Callable[[str], None]], durable: bool = False) -> Path:
    """Write `path` in one step, or not at all: a killed run never leaves it half-written.

    `data` is text (written as UTF-8), bytes, or a function that writes the whole file at the path it is
    given. It goes to `<path>.tmp` (a fixed name: a killed writer's leftover is overwritten next time),
    which then replaces `path` with os.replace. `durable` also fsyncs the file and its directory, so
    that the new file survives a power loss (checkpoints); some network filesystems refuse the latter.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        if callable(data):
            data(str(tmp))
        else:
            tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        if durable:
            _fsync(tmp, os.O_RDONLY)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        with contextlib.suppress(OSError):
            _fsync(path.resolve().parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    return path


def write_json(path, data, indent: int = 1) -> Path:
    """`data` as UTF-8 JSON (non-ASCII kept), atomically."""
    return write_atomic(path, json.dumps(data, indent=indent, ensure_ascii=False) + "\n")


def _fsync(path, flags) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
    tmp = temp_dir_beside(out_dir)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, out_dir)


def temp_dir_beside(dest: Path) -> Path:
    """A new empty `<dest>.tmp-<pid>` next to `dest` (one left by a killed run of the same pid is removed)."""
    tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp
