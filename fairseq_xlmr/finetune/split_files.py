"""Where the raw files of a fine-tuning run's splits are, and which languages they hold.

A split is named by a pattern relative to the data directory. `{lang}` in it stands for the
language (one file per language: `{lang}/dev_2k.tsv`); a pattern without it is one file holding
every language in a language column (XNLI-1.0 `xnli.dev.tsv`). Comma-separated alternatives are
tried in order per language (PAWS-X: English has `en/train.tsv`, the others
`de/translated_train.tsv`).
"""

import glob
import os
import re
from pathlib import Path
from typing import List, Optional

from fairseq_xlmr.files import parse_list

LANG = "{lang}"
ALL = "all"


def alternatives(pattern: str) -> List[str]:
    return [p.strip() for p in pattern.split(",") if p.strip()]


def is_per_language(pattern: str, field: str) -> bool:
    """True when every alternative has `{lang}`; a mix is an error (the file layout would be ambiguous)."""
    parts = alternatives(pattern)
    if not parts:
        raise ValueError(f"`task.{field}` is empty; name the split's file(s), e.g. '{{lang}}/train.tsv'.")
    with_lang = [LANG in p for p in parts]
    if any(with_lang) and not all(with_lang):
        raise ValueError(f"`task.{field}` mixes patterns with and without {LANG}: {pattern!r}; either every "
                         "alternative has one file per language, or the pattern is a single file.")
    if not any(with_lang) and len(parts) > 1:
        raise ValueError(f"`task.{field}` names several files without {LANG}: {pattern!r}; a multi-language "
                         "split is one file.")
    return all(with_lang)


def language_file(data_dir, pattern: str, lang: str) -> Optional[Path]:
    """The first alternative of `pattern` that exists for `lang`, or None."""
    for part in alternatives(pattern):
        path = Path(data_dir) / part.replace(LANG, lang)
        if path.is_file():
            return path
    return None


def discover_languages(data_dir, pattern: str) -> List[str]:
    """Languages that have a file for `pattern` (each alternative globbed with `{lang}` -> `*`), sorted."""
    found = set()
    for part in alternatives(pattern):
        regex = re.compile("^" + re.escape(part).replace(re.escape(LANG), r"(?P<lang>[^/]+?)") + "$")
        for path in glob.glob(os.path.join(glob.escape(str(data_dir)), part.replace(LANG, "*"))):
            match = regex.match(os.path.relpath(path, data_dir).replace(os.sep, "/"))
            if match and os.path.isfile(path):
                found.add(match.group("lang"))
    return sorted(found)


def parse_languages(value: str, field: str) -> Optional[List[str]]:
    """'en,de' -> ['en', 'de'] (the rules of `files.parse_list`); 'all' -> None (resolved from the files)."""
    return None if value.strip() == ALL else parse_list(value, f"task.{field}")
