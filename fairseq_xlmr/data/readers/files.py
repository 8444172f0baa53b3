"""Text decoding shared by the readers: UTF-8, or Latin-1 for the CoNLL-2002 Spanish/Dutch files."""

import logging
from pathlib import Path
from typing import List

logger = logging.getLogger(__name__)

ENCODINGS = ("auto", "utf-8", "latin-1")


def read_lines(path, encoding: str = "auto") -> List[str]:
    """The lines of `path` without line endings.

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
    # Only "\n" ends a line: str.splitlines() would also split at U+0085 and U+2028, which occur
    # inside Latin-1/Windows text and would cut a sentence in two.
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
