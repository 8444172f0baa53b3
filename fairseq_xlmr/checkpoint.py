"""Safe checkpoint loading for fairseq on PyTorch >= 2.6 (weights_only=True stays on).

PyTorch 2.6 made `torch.load(weights_only=True)` the default. fairseq pickles an
`argparse.Namespace` (and, in some runs, numpy scalars) into every checkpoint, so resuming a
run or loading a released XLM-R `model.pt` fails with "Unsupported global: argparse.Namespace".
Switching `weights_only` off would let any checkpoint run arbitrary code on load. Instead we
allow-list exactly the harmless globals fairseq's checkpoints contain, and turn the unpickler's
refusal of anything else into a clear error.
"""

import argparse
import pickle

import numpy as np
import torch
from fairseq import checkpoint_utils

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


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint's pickle names a global that is not on the allow-list."""


def load(path, map_location="cpu"):
    """`torch.load` with `weights_only=True` and a readable refusal of unsafe pickles."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise _explain(path, err) from None


def _explain(path, err):
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
    """Make fairseq's own `load_checkpoint_to_cpu` (resume, hub loading) give our error."""
    original = checkpoint_utils.load_checkpoint_to_cpu
    if getattr(original, "_xlmr_wrapped", False):
        return

    def load_checkpoint_to_cpu(path, *args, **kwargs):
        try:
            return original(path, *args, **kwargs)
        except UnsafeCheckpointError:
            raise
        except pickle.UnpicklingError as err:
            raise _explain(path, err) from None

    load_checkpoint_to_cpu._xlmr_wrapped = True
    # fairseq looks the function up as a module attribute at call time (trainer.py and
    # checkpoint_utils.load_model_ensemble_and_task), so replacing it here is enough.
    checkpoint_utils.load_checkpoint_to_cpu = load_checkpoint_to_cpu


torch.serialization.add_safe_globals(SAFE_GLOBALS)
_wrap_fairseq_loader()
