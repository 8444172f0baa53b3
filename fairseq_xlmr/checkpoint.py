"""Reading checkpoints: safe loading on PyTorch >= 2.6 (weights_only=True stays on), and the
`xlmr_encoder` and dictionary that a model directory describes.

PyTorch 2.6 made `torch.load(weights_only=True)` the default. fairseq pickles an
`argparse.Namespace` (and, in some runs, numpy scalars) into every checkpoint, so resuming a
run or loading a released XLM-R `model.pt` fails with "Unsupported global: argparse.Namespace".
Switching `weights_only` off would let any checkpoint run arbitrary code on load. Instead we
allow-list exactly the harmless globals fairseq's checkpoints contain, and turn the unpickler's
refusal of anything else into a clear error. A file cut short (a killed copy or download) or
otherwise damaged gets its own error instead of PyTorch's zip, EOF or pickle message.
fairseq's own loader gives the same errors through `fairseq_xlmr.patches.checkpoint_loading`.

Our checkpoints, stock fairseq RoBERTa's and the 2019 XLM-R releases (`decoder.sentence_encoder.*`,
`emb_layer_norm`) all load into `xlmr_encoder`, whose parameter names are RoBERTa's.
"""

import argparse
import os
import pickle
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import numpy as np
import torch
from fairseq.data import Dictionary
from omegaconf import OmegaConf

from fairseq_xlmr.models.xlmr_encoder import XlmrEncoderConfig, XlmrEncoderModel

# What fairseq checkpoints (ours, stock fairseq-train, and the 2019 XLM-R releases) pickle
# besides tensors and containers: the legacy `args` Namespace, and numpy scalars that end
# up in `extra_state` (e.g. the best validation loss).
SAFE_GLOBALS = [
    argparse.Namespace,
    np.dtype,
    np._core.multiarray.scalar,
    type(np.dtype(np.float64)),
    type(np.dtype(np.float32)),
    type(np.dtype(np.int64)),
]
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6
PICKLE_OPCODE_PROTO = 0x80  # first byte of the legacy format (the 2019 XLM-R releases): a bare pickle


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint's pickle names a global that is not on the allow-list."""


class DamagedCheckpointError(ValueError):
    """A checkpoint file is cut short or corrupted: it cannot be loaded at all."""


def allow_safe_globals() -> None:
    """Let every `torch.load(weights_only=True)` of the process read fairseq's checkpoints (idempotent).

    Process-wide on purpose: torch's `safe_globals` context manager removes its globals on exit, even those
    that were allowed before it.
    """
    torch.serialization.add_safe_globals(SAFE_GLOBALS)


def load(path, map_location="cpu"):
    """`torch.load` with `weights_only=True` and a readable refusal of unsafe pickles and damaged files."""
    allow_safe_globals()
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # re-raised unchanged unless diagnosed
        ours = explain(path, err)
        if ours is None:
            raise
        raise ours from None


def explain(path, err: Exception) -> Optional[Exception]:
    """Our error for a failed load of `path`, or None to let PyTorch's `err` through."""
    damage = _damage(path, err)
    if damage is not None:
        return _damaged(path, damage)
    if isinstance(err, pickle.UnpicklingError):
        return _unsafe(path, err)
    return None


def _damage(path, err: Exception) -> Optional[str]:
    """Why the local file `path` is not a whole checkpoint, or None when it looks whole (or is not local)."""
    if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
        return None
    size = os.path.getsize(path)
    if size == 0:
        return "it is empty (0 bytes)"
    with open(path, "rb") as f:
        head = f.read(len(ZIP_MAGIC))
    if ZIP_MAGIC.startswith(head):  # a file of under 4 bytes may hold a cut-short magic
        # A zip archive ends with its central directory: any cut removes it.
        if not zipfile.is_zipfile(path):
            return f"its zip archive stops after {size:,} byte(s), before its central directory: it was cut short"
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()  # reads every member: only on this failure path
        except (zipfile.BadZipFile, OSError, EOFError) as zip_err:
            return f"its zip archive is unreadable ({zip_err})"
        return None if bad is None else f"its member {bad} fails its CRC check: the bytes changed after saving"
    if head[0] == PICKLE_OPCODE_PROTO:
        message = str(err)
        if isinstance(err, (EOFError, IndexError)) or "EOF" in message or "truncated" in message:
            return f"its pickle stops after {size:,} byte(s): it was cut short"
        return None
    return (f"it starts with {head!r}, neither a zip archive (PyTorch >= 1.6) nor a pickle (older PyTorch): "
            "not a checkpoint at all (an error page saved by a failed download?)")


def _damaged(path, damage: str) -> DamagedCheckpointError:
    path = Path(path)
    # Other checkpoints of the run, newest first, that end like a whole file (a cheap check: no full read).
    others = sorted((p for p in path.parent.glob("checkpoint*.pt") if p != path and zipfile.is_zipfile(p)),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    if others:
        fix = (f"to resume the run, start from the newest intact checkpoint with --restore-file {others[0]} "
               f"(those beside it, newest first: {', '.join(p.name for p in others[:4])}) or copy that file over "
               f"{path.name}; for a copied or downloaded file, copy or download it again")
    else:
        fix = ("copy or download it again; for a training run's checkpoint_last.pt, resume from the checkpoint "
               "before it with --restore-file")
    return DamagedCheckpointError(f"checkpoint {path} is incomplete or damaged: {damage}. Fix: {fix}.")


def _unsafe(path, err: pickle.UnpicklingError) -> UnsafeCheckpointError:
    allowed = ", ".join(f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS)
    # PyTorch's message is long; keep the line that names the refused global.
    lines = [line.strip() for line in str(err).splitlines() if "GLOBAL" in line]
    return UnsafeCheckpointError(
        f"refusing to load checkpoint {path}: its pickle asks for a global that is not on "
        f"fairseq_xlmr's allow-list ({allowed}), and unpickling it could run arbitrary code. "
        f"PyTorch said: {lines[0] if lines else str(err).strip()} "
        "Fix: only if you trust this file and the named class is plain data, allow it with "
        "torch.serialization.add_safe_globals([TheClass]) before loading."
    )


# --------------------------------------------------------------------------- the model a checkpoint describes

MASK = "<mask>"


def load_dictionary(path):
    """fairseq Dictionary with `<mask>` appended last, as the MLM task builds it (mask = len - 1)."""
    dictionary = Dictionary.load(str(path))
    dictionary.add_symbol(MASK)
    return dictionary


def model_config_from_state(state):
    """Our model config from a checkpoint's `cfg.model` (dict or Namespace) or legacy `args`."""
    source = None
    if state.get("cfg") is not None:
        source = state["cfg"]["model"]
    if source is None:
        source = state.get("args")
    if source is None:
        raise ValueError("checkpoint has neither `cfg` nor `args`; it was not written by fairseq")
    if isinstance(source, argparse.Namespace):
        source = vars(source)
    elif OmegaConf.is_config(source):
        source = OmegaConf.to_container(source)
    names = [f.name for f in XlmrEncoderConfig.__dataclass_fields__.values()]
    cfg = argparse.Namespace(**{name: source[name] for name in names if source.get(name) is not None})
    cfg.load_checkpoint_heads = True  # keep any classification heads the checkpoint has
    if "layernorm_embedding" not in source:
        # 2019 checkpoints predate the flag: post-LN RoBERTa always had the embedding LayerNorm.
        cfg.layernorm_embedding = not source.get("encoder_normalize_before", False)
    return cfg


def embedding_rows(model_state):
    for key in ("encoder.sentence_encoder.embed_tokens.weight", "decoder.sentence_encoder.embed_tokens.weight"):
        if key in model_state:
            return model_state[key].shape[0]
    raise ValueError("checkpoint has no `*.sentence_encoder.embed_tokens.weight`: not a RoBERTa/XLM-R model")


def load_model(checkpoint_path, dictionary):
    """Build `xlmr_encoder` from a checkpoint's config and load its weights (strict)."""
    return model_from_state(load(checkpoint_path), checkpoint_path, dictionary)


def model_from_state(state, checkpoint_path, dictionary):
    """`load_model` on a checkpoint already read (`checkpoint_path` names it in errors)."""
    rows = embedding_rows(state["model"])
    if rows != len(dictionary):
        raise ValueError(
            f"{checkpoint_path} has {rows} embedding rows but the dictionary has {len(dictionary)} "
            f"entries (dict.txt + 4 specials + {MASK}); the dict.txt does not belong to this checkpoint. "
            "Fix: use the dict.txt that was written next to the model (or by `xlmr train-spm` for it)."
        )
    cfg = model_config_from_state(state)
    model = XlmrEncoderModel.build_model(cfg, SimpleNamespace(source_dictionary=dictionary))
    model.load_state_dict(state["model"], strict=True)  # upgrades 2019 key names first
    return model.eval()
