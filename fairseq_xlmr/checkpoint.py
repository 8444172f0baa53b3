"""Safe checkpoint loading for fairseq on PyTorch >= 2.6 (weights_only=True stays on).

PyTorch 2.6 made `torch.load(weights_only=True)` the default. fairseq pickles an
`argparse.Namespace` (and, in some runs, numpy scalars) into every checkpoint, so resuming a
run or loading a released XLM-R `model.pt` fails with "Unsupported global: argparse.Namespace".
Switching `weights_only` off would let any checkpoint run arbitrary code on load. Instead we
allow-list exactly the harmless globals fairseq's checkpoints contain, and turn the unpickler's
refusal of anything else into a clear error. A file cut short (a killed copy or download) or
otherwise damaged gets its own error instead of PyTorch's zip, EOF or pickle message.

Also patched here: fairseq-train's `--arch` names fairseq_xlmr's architectures when an unknown `xlmr_*`
one is asked for (`_check_architecture_names`), instead of listing fairseq's ~160 on one line.
"""

import argparse
import os
import pickle
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from fairseq import checkpoint_utils, options
from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_REGISTRY

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


def load(path, map_location="cpu"):
    """`torch.load` with `weights_only=True` and a readable refusal of unsafe pickles and damaged files."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # re-raised unchanged unless diagnosed
        ours = _explain(path, err)
        if ours is None:
            raise
        raise ours from None


def _explain(path, err: Exception) -> Optional[Exception]:
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


def _wrap_fairseq_loader():
    """Make fairseq's own `load_checkpoint_to_cpu` (resume, hub loading) give our errors."""
    original = checkpoint_utils.load_checkpoint_to_cpu
    if getattr(original, "_xlmr_wrapped", False):
        return

    def load_checkpoint_to_cpu(path, *args, **kwargs):
        try:
            return original(path, *args, **kwargs)
        except (UnsafeCheckpointError, DamagedCheckpointError):
            raise
        except Exception as err:  # re-raised unchanged unless diagnosed
            ours = _explain(path, err)
            if ours is None:
                raise
            raise ours from None

    load_checkpoint_to_cpu._xlmr_wrapped = True
    # fairseq looks the function up as a module attribute at call time (trainer.py and
    # checkpoint_utils.load_model_ensemble_and_task), so replacing it here is enough.
    checkpoint_utils.load_checkpoint_to_cpu = load_checkpoint_to_cpu


# --------------------------------------------------------------------------- fairseq-train --arch


def check_architecture_name(name: str) -> str:
    """argparse `type` of `--arch`: an unknown `xlmr_*` name lists our architectures, not all of fairseq's."""
    if name.startswith("xlmr_") and name not in ARCH_MODEL_REGISTRY:
        # The presets; a model's own name (xlmr_encoder) is an --arch too, but with every size left at its default.
        ours = [arch for arch, model in ARCH_MODEL_REGISTRY.items()
                if model.__module__.startswith("fairseq_xlmr") and arch not in MODEL_REGISTRY]
        raise argparse.ArgumentTypeError(f"unknown architecture {name!r}; fairseq_xlmr's are {', '.join(ours)} "
                                         "(xlmr_debug: the tiny one for CPU runs).")
    return name


def _check_architecture_names():
    """Give fairseq-train's `--arch` our `type` check, which argparse runs before its choices check,
    whose error lists all ~160 architectures of fairseq on one line.

    Replaces `fairseq.options.add_model_args` (checked on ve-fairseq 0.12.3), which `get_training_parser`
    looks up at call time after importing the --user-dir; does nothing if `--arch` is not found.
    """
    original = options.add_model_args
    if getattr(original, "_xlmr_wrapped", False):
        return

    def add_model_args(parser):
        group = original(parser)
        arch = next((action for action in parser._actions if action.dest == "arch"), None)
        if arch is not None and arch.type is None:
            arch.type = check_architecture_name
        return group

    add_model_args._xlmr_wrapped = True
    options.add_model_args = add_model_args


torch.serialization.add_safe_globals(SAFE_GLOBALS)
_wrap_fairseq_loader()
_check_architecture_names()
