"""What every task checks about the model it builds and the pretrained checkpoint it starts from, before
the first update: inputs fit the position table, the model is built like the pretrained one (sizes,
LayerNorm epsilon, pooling, dictionary), and the pretrained model's SentencePiece model and dict.txt exist.
"""

import os
from typing import List, Optional

import torch

from fairseq_xlmr import checkpoint
from fairseq_xlmr.files import DICT_FILE, SPM_FILE


def check_fits_model(model, length, field, fix):
    """Raise when task.<field> = `length` exceeds the model's max_positions; return max_positions.

    fairseq would otherwise skip (training) or fail on (validation) every longer sample.
    """
    max_positions = model.max_positions()
    if isinstance(max_positions, int) and length > max_positions:
        raise ValueError(f"`task.{field}` must not exceed the model's max_positions, got {length} > "
                         f"{max_positions}; {fix}")
    return max_positions


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
            restore = f"--restore-file {cfg.restore_file!r} is not a file" if cfg.restore_file else "no --restore-file"
            raise ValueError(f"`task.spm_model` is empty and there is no pretrained checkpoint to find the {SPM_FILE} "
                             f"beside (no --finetune-from-model, {restore}); pass --finetune-from-model "
                             "<pretrained>/model.pt or --spm-model.")
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
    checkpoint.allow_safe_globals()
    try:  # mmap: the weights are not read
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except RuntimeError:  # legacy (non-zip) pickles cannot be mmapped
        state = checkpoint.load(path)
    cfg = checkpoint.model_config_from_state(state)
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
