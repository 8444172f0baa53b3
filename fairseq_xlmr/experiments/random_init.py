"""`xlmr random-init`: a randomly initialised twin of a model directory, the baseline that shows what
pretraining adds (the "random init" rows of cross-lingual transfer studies, e.g. Conneau et al., 2020).

    xlmr random-init demo/release demo/random_init --seed 1

The model is built from the source checkpoint's own config (same architecture and sizes), initialised
as pretraining starts (BERT init: N(0, 0.02)), and saved with the source's `cfg` and task state but
without its optimizer state, next to copies of its dict.txt and SentencePiece model, so that every
tool that reads the source directory (`hub.from_pretrained`, `--finetune-from-model`) reads this one.
"""

import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import torch

from fairseq_xlmr import checkpoint
from fairseq_xlmr.checkpoint import load_dictionary, model_config_from_state
from fairseq_xlmr.files import CHECKPOINT_FILE, DICT_FILE, SPM_FILE, write_atomic
from fairseq_xlmr.models.xlmr_encoder import XlmrEncoderModel

logger = logging.getLogger(__name__)

# What pretraining leaves behind and a fresh model must not carry.
TRAINING_STATE = ("last_optimizer_state", "extra_state", "optimizer_history")  # replaced by a fresh start


def run(args) -> int:
    path = write_random_init(args.model_dir, args.out_dir, args.checkpoint_file, args.seed)
    print(f"wrote {path}")
    return 0


def random_init_state(state: dict, dictionary, seed: int) -> dict:
    """A copy of checkpoint `state` whose `model` is a freshly initialised model of the same config."""
    cfg = model_config_from_state(state)
    cfg.load_checkpoint_heads = False
    torch.manual_seed(seed)
    model = XlmrEncoderModel.build_model(cfg, SimpleNamespace(source_dictionary=dictionary))
    fresh = model.state_dict()
    source = state["model"]
    # The source may carry heads (classification, token) that the bare model lacks: a random init
    # has none to keep, and must have every weight the source's encoder and LM head have.
    missing = sorted(key for key in source if key not in fresh and ".classification_heads." not in key
                     and ".token_heads." not in key)
    if missing:
        raise ValueError(f"the model built from the checkpoint's config lacks {missing[:5]}: the checkpoint was "
                         "not written by xlmr_encoder (convert it with `xlmr import-hf` or load it once first).")
    out = {key: value for key, value in state.items() if key not in TRAINING_STATE}
    out["model"] = {key: fresh[key] for key in source if key in fresh}
    # fairseq's loader reads the last optimizer-history entry and the train iterator: record a model
    # that has seen no update, at the start of epoch 1 (and no optimizer state to resume).
    last = (state.get("optimizer_history") or [{}])[-1]
    out["optimizer_history"] = [{"criterion_name": last.get("criterion_name"),
                                 "optimizer_name": last.get("optimizer_name"),
                                 "lr_scheduler_state": {"best": None}, "num_updates": 0}]
    out["extra_state"] = {"train_iterator": {"epoch": 1, "iterations_in_epoch": 0, "version": 2}}
    return out


def write_random_init(model_dir, out_dir, checkpoint_file: str = CHECKPOINT_FILE, seed: int = 1) -> Path:
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    for name in (checkpoint_file, DICT_FILE, SPM_FILE):
        if not (model_dir / name).is_file():
            raise FileNotFoundError(f"{model_dir / name} not found: a model dir holds {checkpoint_file}, {DICT_FILE} "
                                    f"and {SPM_FILE}.")
    state = checkpoint.load(model_dir / checkpoint_file)
    dictionary = load_dictionary(str(model_dir / DICT_FILE))
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / CHECKPOINT_FILE, lambda tmp: torch.save(random_init_state(state, dictionary, seed), tmp))
    for name in (DICT_FILE, SPM_FILE):
        shutil.copyfile(model_dir / name, out_dir / name)
    logger.info("random init (seed %d) of %s written to %s", seed, model_dir / checkpoint_file, out_dir)
    return out_dir / CHECKPOINT_FILE
