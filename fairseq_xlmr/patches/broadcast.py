"""Replaces `fairseq.distributed.utils._broadcast_object_slow` (checked on ve-fairseq 0.12.3): a run with more than
one process can resume.

Rank 0 loads the checkpoint and broadcasts it pickled; the other ranks unpickle it with PyTorch's default
`weights_only=True` (>= 2.6), which refuses the OmegaConf DictConfig that fairseq made of the checkpoint's
`cfg`: every multi-GPU run crashed when it resumed (a requeued job, a fine-tuning start). The bytes come from
rank 0 of the same job; while they are read we allow exactly OmegaConf's container classes. Checkpoint files
keep the strict allow-list of `fairseq_xlmr.checkpoint.SAFE_GLOBALS`.
"""

import collections
import inspect
import typing

import torch
from fairseq.distributed import utils as distributed_utils
from omegaconf import DictConfig, ListConfig, base, nodes

from fairseq_xlmr.patches.wrapping import replace

# What the broadcast pickle names besides the checkpoint allow-list (added by patches/checkpoint_loading.py):
# fairseq's placeholder for the tensors it sends separately, and for a DictConfig/ListConfig the containers,
# their metadata, their value nodes and the plain types recorded as their element and key types.
BROADCAST_SAFE_GLOBALS = [
    distributed_utils._TensorPlaceholder, DictConfig, ListConfig, base.Metadata, base.ContainerMetadata, typing.Any,
    collections.defaultdict, dict, list, tuple, set, int, float, str, bool, bytes,
    *(c for c in vars(nodes).values() if inspect.isclass(c) and issubclass(c, nodes.ValueNode)),
]


def with_config_globals(broadcast_object_slow):
    def wrapper(*args, **kwargs):
        with torch.serialization.safe_globals(BROADCAST_SAFE_GLOBALS):
            return broadcast_object_slow(*args, **kwargs)

    return wrapper


def apply() -> None:
    # broadcast_object and broadcast_tensors look it up as a module attribute.
    replace(distributed_utils, "_broadcast_object_slow", with_config_globals)
