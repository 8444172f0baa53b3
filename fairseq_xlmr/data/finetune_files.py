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


# Model options that must equal the pretrained checkpoint's, and their fairseq-train flags. Weights load
# whatever the LayerNorm epsilon or the pooling, so a mismatch there would go unnoticed.
PRETRAINED_OPTIONS = {
    "encoder_layers": "--encoder-layers", "encoder_embed_dim": "--encoder-embed-dim",
    "encoder_ffn_embed_dim": "--encoder-ffn-embed-dim", "encoder_attention_heads": "--encoder-attention-heads",
    "max_positions": "--max-positions", "encoder_normalize_before": "--encoder-normalize-before",
    "layer_norm_eps": "--layer-norm-eps", "sentence_pooling": "--sentence-pooling",
}


def pretrained_model_options(path) -> dict:
    """{field: value} of PRETRAINED_OPTIONS in a pretrained checkpoint (ours, stock fairseq, a 2019 release).

    Fields the checkpoint predates (no layer_norm_eps, sentence_pooling) are left out: their defaults hold.
    """
    from fairseq_xlmr import checkpoint
    from fairseq_xlmr.hub import model_config_from_state

    try:  # mmap: the weights are not read
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except RuntimeError:  # legacy (non-zip) pickles cannot be mmapped
        state = checkpoint.load(path)
    cfg = model_config_from_state(state)
    options = {name: getattr(cfg, name) for name in PRETRAINED_OPTIONS if getattr(cfg, name, None) is not None}
    if getattr(cfg, "dictionary_fingerprint", ""):
        options["dictionary_fingerprint"] = cfg.dictionary_fingerprint
    for key, value in state["model"].items():
        if key.endswith("sentence_encoder.embed_positions.weight"):
            options["max_positions"] = value.shape[0] - 2  # learned positions are offset by padding_idx + 1
    return options


def as_train_args(options: dict) -> List[str]:
    """fairseq-train flags for `pretrained_model_options` (booleans as store-true flags)."""
    args = []
    for name, value in options.items():
        if name not in PRETRAINED_OPTIONS:  # recorded, not chosen (the dictionary fingerprint)
            continue
        if isinstance(value, bool):
            args += [PRETRAINED_OPTIONS[name]] if value else []
        else:
            args += [PRETRAINED_OPTIONS[name], str(value)]
    return args


def check_matches_pretrained(model_args, path) -> None:
    """Refuse a model built with other options than the pretrained checkpoint at `path`, naming the flags."""
    wanted = pretrained_model_options(path)
    fingerprint = wanted.pop("dictionary_fingerprint", None)
    if fingerprint and fingerprint != model_args.dictionary_fingerprint:
        raise ValueError(f"the pretrained model {path} was trained with the dictionary {fingerprint}, but the task's "
                         f"dict.txt has fingerprint {model_args.dictionary_fingerprint}: another vocabulary. Fine-tune "
                         "with the dict.txt and sentencepiece.bpe.model beside the pretrained model (drop --spm-model, "
                         "or point it at that model's files).")
    wrong = {name: value for name, value in wanted.items() if getattr(model_args, name, None) != value}
    if wrong:
        got = ", ".join(f"{name}={getattr(model_args, name, None)!r}" for name in wrong)
        has = ", ".join(f"{name}={value!r}" for name, value in wrong.items())
        raise ValueError(f"the model is built with {got}, but the pretrained model {path} has {has}; fine-tune with "
                         f"its options: {' '.join(as_train_args(wanted))} (xlmr finetune-seeds adds them itself).")
