"""Where the files of a fine-tuning run are: the raw files of each split (and which languages they
hold), and the pretrained model's SentencePiece model and dict.txt.

A split is named by a pattern relative to the data directory. `{lang}` in it stands for the
language (one file per language: `{lang}/dev_2k.tsv`); a pattern without it is one file holding
every language in a language column (XNLI-1.0 `xnli.dev.tsv`). Comma-separated alternatives are
tried in order per language (PAWS-X: English has `en/train.tsv`, the others
`de/translated_train.tsv`).
"""

import glob
import logging
import os
import re
from pathlib import Path
from typing import List, Optional

import torch

from fairseq_xlmr.hub import DICT_FILE, SPM_FILE

logger = logging.getLogger(__name__)

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
    """'en,de' -> ['en', 'de'] (order kept, duplicates dropped); 'all' -> None (resolved from the files)."""
    if value.strip() == ALL:
        return None
    languages = list(dict.fromkeys(lang.strip() for lang in value.split(",") if lang.strip()))
    if not languages:
        raise ValueError(f"`task.{field}` is empty; give comma-separated languages (e.g. 'en') or '{ALL}'.")
    return languages


def pretrained_checkpoint(cfg) -> Optional[str]:
    """The checkpoint fine-tuning starts from: --finetune-from-model, or a --restore-file that is a file."""
    if cfg.finetune_from_model:
        return cfg.finetune_from_model
    if cfg.restore_file and os.path.isfile(cfg.restore_file):
        return cfg.restore_file
    return None


def resolve_vocab_files(cfg):
    """(dict.txt, SentencePiece model) paths of the pretrained model, checked to exist."""
    if cfg.spm_model:
        spm_path = cfg.spm_model
    else:
        pretrained = pretrained_checkpoint(cfg)
        if pretrained is None:
            raise ValueError(f"`task.spm_model` is empty and there is no --finetune-from-model (or --restore-file) "
                             f"to find the {SPM_FILE} beside; pass --finetune-from-model <pretrained>/model.pt or "
                             "--spm-model.")
        spm_path = os.path.join(os.path.dirname(os.path.abspath(pretrained)), SPM_FILE)
    dict_path = os.path.join(os.path.dirname(os.path.abspath(spm_path)), DICT_FILE)
    if not os.path.isfile(spm_path):
        raise ValueError(f"SentencePiece model {spm_path!r} does not exist; put the pretrained model's {SPM_FILE} "
                         "there or pass --spm-model.")
    if not os.path.isfile(dict_path):
        raise ValueError(f"{DICT_FILE} not found beside the SentencePiece model: {dict_path!r}; copy the pretrained "
                         f"model's {DICT_FILE} there (an XLM-R release or `make demo` output has both).")
    return dict_path, spm_path


def pretrained_positions(path: str) -> Optional[int]:
    """Max positions of a fairseq RoBERTa/XLM-R checkpoint (rows of the position table - 2), if readable."""
    try:  # mmap: only the header and the one tensor are read
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as error:  # legacy (non-zip) pickles cannot be mmapped: skip the early check
        logger.info("could not read positions of %s early (%s)", path, type(error).__name__)
        return None
    for key, value in state.get("model", {}).items():
        if key.endswith("sentence_encoder.embed_positions.weight"):
            return value.shape[0] - 2  # learned positions are offset by padding_idx + 1
    return None
