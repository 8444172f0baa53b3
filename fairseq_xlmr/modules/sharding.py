"""Fully sharded data parallelism (ZeRO-3; Rajbhandari et al., 2020) on PyTorch's FSDP2 (`fully_shard`).

Each rank keeps 1/world of every parameter, gradient and optimizer-state tensor: dimension 0 cut as `torch.chunk`
cuts it (the first ranks get ceil(rows / world) rows, the last may get fewer or none), held as DTensors with
placement `Shard(0)`. A sharding unit (one Transformer layer; the rest of the model is the root unit) gathers its
full parameters for its forward and backward and frees them after. This module is the torch side only: sharding
a module, the mixed-precision policy, and converting state between full tensors, this rank's chunk (what a sharded
checkpoint file holds) and DTensors. fairseq's trainer meets it in `fairseq_xlmr/patches/fully_sharded.py`.
"""

from typing import Dict, Iterable, List, Optional, Sequence

import torch
from torch import nn
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor, Shard


def mixed_precision(bf16: bool) -> MixedPrecisionPolicy:
    """bf16: parameters gathered and computed in bfloat16, gradients reduced in float32 into the float32 shards
    (the master weights, which the optimizer steps). Otherwise everything stays float32."""
    if bf16:
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()


def shard(model: nn.Module, units: Sequence[nn.Module], mesh, bf16: bool = False,
          reshard_after_forward: bool = True) -> nn.Module:
    """Shard `model` in place: each of `units` (bottom-up) is its own unit, the root holds the rest.

    The root keeps the tied input embedding / LM head projection together. `reshard_after_forward=False` keeps
    each layer's gathered parameters from its forward to its backward (less communication, more memory).
    """
    policy = mixed_precision(bf16)
    for unit in units:
        fully_shard(unit, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard_after_forward)
    # The root's parameters are needed at the very end of the backward anyway: never free them in between.
    fully_shard(model, mesh=mesh, mp_policy=policy, reshard_after_forward=False)
    return model


def is_sharded(value) -> bool:
    return isinstance(value, DTensor)


def local(value):
    """This rank's part of a DTensor; anything else unchanged."""
    return value.to_local() if isinstance(value, DTensor) else value


def local_chunk(full: torch.Tensor, like: DTensor) -> torch.Tensor:
    """The rows of `full` (the whole tensor) that this rank holds of `like`, cut as FSDP2 cuts them."""
    assert tuple(like.placements) == (Shard(0),), f"FSDP2 shards dimension 0 only, got {like.placements}"
    world, rank = like.device_mesh.size(), like.device_mesh.get_local_rank()
    chunks = torch.chunk(full, world, dim=0)
    return chunks[rank] if rank < len(chunks) else full[:0]


def to_dtensor(value: torch.Tensor, like: DTensor, name: str) -> DTensor:
    """`value` as a DTensor placed like `like`: `value` is either the whole tensor or this rank's chunk of it.

    A whole tensor (a consolidated or unsharded checkpoint) is cut to this rank's chunk; a chunk (a sharded
    checkpoint of this world size) is used as it is. Any other shape is an error naming `name`.
    """
    mine = like.to_local()
    if tuple(value.shape) == tuple(like.shape):
        value = local_chunk(value, like)
    elif tuple(value.shape) != tuple(mine.shape):
        raise ValueError(f"{name}: the checkpoint holds shape {tuple(value.shape)}, but this run's tensor is "
                         f"{tuple(like.shape)} whole and {tuple(mine.shape)} on this rank of "
                         f"{like.device_mesh.size()}; the checkpoint belongs to another model or another world "
                         "size.")
    value = value.to(device=mine.device, dtype=mine.dtype).contiguous()
    return DTensor.from_local(value, like.device_mesh, like.placements, shape=like.shape, stride=like.stride())


def local_state(state: Dict[str, object]) -> Dict[str, object]:
    """A state dict whose DTensors are replaced by this rank's chunks (plain tensors pickle without a mesh)."""
    return {key: local(value) for key, value in state.items()}


def sharded_keys(state: Dict[str, object]) -> List[str]:
    return sorted(key for key, value in state.items() if is_sharded(value))


def full_state(state: Dict[str, object], keep: bool) -> Dict[str, object]:
    """The whole tensors of a state dict, gathered one at a time (a collective: call on every rank).

    `keep`: whether this rank returns them (on CPU); the others gather and drop, so that no rank but the one
    that writes ever holds the whole model.
    """
    out = {}
    for key, value in state.items():
        if is_sharded(value):
            value = value.full_tensor()
        if keep:
            out[key] = value.cpu() if torch.is_tensor(value) else value
    return out


def concat_chunks(chunks: Sequence[torch.Tensor]) -> torch.Tensor:
    """The whole tensor from every rank's chunk, rank 0 first (the inverse of `local_chunk`)."""
    return torch.cat(list(chunks), dim=0)


def held_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of this rank's part of `tensors` (a tensor met twice, a tied weight, counted once)."""
    seen, total = set(), 0
    for tensor in tensors:
        if not torch.is_tensor(tensor) or id(tensor) in seen:
            continue
        seen.add(id(tensor))
        part = local(tensor)
        total += part.numel() * part.element_size()
    return total


def whole_bytes(tensors: Iterable[torch.Tensor], dtype: Optional[torch.dtype] = None) -> int:
    """Bytes the same tensors take unsharded (each counted once)."""
    seen, total = set(), 0
    for tensor in tensors:
        if not torch.is_tensor(tensor) or id(tensor) in seen:
            continue
        seen.add(id(tensor))
        size = torch.empty((), dtype=dtype or tensor.dtype).element_size()
        total += tensor.numel() * size
    return total
