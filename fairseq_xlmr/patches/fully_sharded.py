"""Replaces `Trainer`, `fsdp_enable_wrap` and `fsdp_wrap` of `fairseq_cli.train` (checked on ve-fairseq 0.12.3 with
torch 2.13): `--ddp-backend fully_sharded` runs on PyTorch's FSDP2 (`fully_shard`) instead of fairscale.

fairseq's fully_sharded backend wraps the model in fairscale's FullyShardedDataParallel. fairscale is
unmaintained (last release 0.4.13, December 2022) and its FSDP runs on CUDA only: on torch 2.13 it imports, but
the first forward on CPU fails ("Torch not compiled with CUDA enabled"; with `compute_device=cpu`, a KeyError on
the CUDA stream it never created), so nothing of it can be tested on CPU. FSDP2 shards the same way, runs over
gloo on CPU and NCCL on GPUs, and is maintained with PyTorch.

What stays fairseq's: the command line (`--ddp-backend fully_sharded`, `--use-sharded-state`,
`--no-reshard-after-forward`), the trainer's own fully_sharded branches (checkpoint names `-shard<rank>`, every rank
saving and loading its file, the optimizer state gathered to rank 0 without `--use-sharded-state`), and through
them the atomic saves and the preemption stop. What changes: `FullyShardedTrainer` shards `xlmr_encoder` one
Transformer layer per unit (`modules/sharding.py`) instead of importing fairscale, and `FullyShardedModel` gives the
trainer the state-dict methods it expected of fairseq's fairscale wrapper; gradient norms are summed over the
shards. `check_config` refuses, before any data or model is loaded, what this cannot run.
"""

import contextlib
import logging
import os
import sys
import uuid
from glob import glob

import torch
import torch.distributed as dist
from fairseq import utils
from fairseq.distributed import utils as distributed_utils
from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_REGISTRY
from fairseq.trainer import Trainer
from omegaconf import OmegaConf
from torch import nn
from torch.distributed.device_mesh import DeviceMesh

from fairseq_xlmr.models.xlmr_encoder import XlmrEncoderModel
from fairseq_xlmr.modules import sharding
from fairseq_xlmr.patches.wrapping import replace

logger = logging.getLogger(__name__)

BACKEND = "fully_sharded"
OPTIMIZERS = ("xlmr_fused_adam",)  # steps DTensor shards (torch's AdamW); saves and loads them per rank
FAIRSEQ_PRECISION = ("fp16", "bf16", "amp", "memory_efficient_fp16", "memory_efficient_bf16")


def check_config(cfg) -> None:
    """Raise ValueError for a fully_sharded run this backend cannot train; nothing for other backends."""
    dt = cfg.distributed_training
    if dt.ddp_backend != BACKEND:
        return
    world = dt.distributed_world_size
    if world < 2:
        raise ValueError(
            f"`distributed_training.ddp_backend` is '{BACKEND}' but `distributed_world_size` is {world}: sharding "
            "splits parameters, gradients and optimizer state over processes, and one process holds them all. "
            f"Fix: start 2 or more processes (one per GPU: torchrun --nproc-per-node N, or srun with "
            "distributed_world_size=N), or train on one with ddp_backend=legacy_ddp.")
    arch = cfg.model._name if OmegaConf.is_config(cfg.model) or hasattr(cfg.model, "_name") else None
    model_cls = ARCH_MODEL_REGISTRY.get(arch) or MODEL_REGISTRY.get(arch)
    if model_cls is None or not issubclass(model_cls, XlmrEncoderModel):
        raise ValueError(
            f"`distributed_training.ddp_backend` is '{BACKEND}' with model '{arch}'; this backend shards "
            "fairseq_xlmr's xlmr_encoder one Transformer layer at a time. Fix: --arch xlmr_xl/xlmr_xxl (or another "
            "xlmr_* preset), or another ddp_backend for this model.")
    name = cfg.optimizer._name if cfg.optimizer is not None else None
    if name not in OPTIMIZERS:
        raise ValueError(
            f"`optimizer` is '{name}' with ddp_backend '{BACKEND}'; sharded training steps, saves and loads "
            f"per-rank optimizer state with {', '.join(OPTIMIZERS)} only. Fix: --optimizer xlmr_fused_adam (the same "
            "adam_betas, adam_eps and weight_decay fields as fairseq's adam).")
    if cfg.optimizer.get("implementation") == "apex":
        raise ValueError(
            f"`optimizer.implementation` is 'apex' with ddp_backend '{BACKEND}'; apex's FusedAdam cannot step "
            "DTensor shards. Fix: optimizer.implementation=auto (torch's fused AdamW).")
    for flag in FAIRSEQ_PRECISION:
        if cfg.common.get(flag):
            raise ValueError(
                f"`common.{flag}` is true with ddp_backend '{BACKEND}'; fairseq's fp16/bf16 optimizer wrappers keep "
                "their own unsharded copies of the weights. Fix: drop it and set model.bf16_autocast=true (on GPUs: "
                "bf16 compute, float32 master weights, gradients reduced in float32).")
    refused = {
        "distributed_training.cpu_offload": (dt.cpu_offload, "keep the shards on the GPU"),
        "distributed_training.zero_sharding": (dt.zero_sharding != "none", "it is already sharded; use 'none'"),
        "distributed_training.pipeline_model_parallel": (dt.pipeline_model_parallel, "use data parallelism only"),
        "optimization.use_bmuf": (cfg.optimization.use_bmuf, "drop it"),
        "ema.store_ema": (cfg.ema.store_ema, "average checkpoints afterwards with `xlmr average`"),
        "common.model_parallel_size": (cfg.common.model_parallel_size > 1, "use 1"),
    }
    for field, (bad, fix) in refused.items():
        if bad:
            value = OmegaConf.select(cfg, field)
            raise ValueError(f"`{field}` is {value} with ddp_backend '{BACKEND}', which it does not support. "
                             f"Fix: {fix}.")


class FullyShardedModel(nn.Module):
    """The sharded model as fairseq's trainer sees it under fully_sharded: what it asked of fairseq's fairscale
    wrapper (`use_sharded_state`, state dicts, optimizer state gathering), attributes forwarded to the model.

    With `use_sharded_state` its state dict is this rank's chunk of every sharded tensor (one file per rank);
    without, the whole tensors, gathered to rank 0 (empty elsewhere). `load_state_dict` takes either, or an
    unsharded checkpoint, and cuts it to this rank.
    """

    def __init__(self, module: nn.Module, use_sharded_state: bool, run_id: str):
        super().__init__()
        self.module = module
        self.use_sharded_state = use_sharded_state
        self.run_id = run_id  # the same on every rank of a run: shards of one save carry it

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    @property
    def rank(self) -> int:
        return dist.get_rank(distributed_utils.get_data_parallel_group())

    def state_dict(self, destination=None, prefix="", keep_vars=False):
        state = self.module.state_dict()
        if self.use_sharded_state:
            return sharding.local_state(state)
        return sharding.full_state(state, keep=self.rank == 0)

    def load_state_dict(self, state_dict, strict=True, model_cfg=None):
        """fairseq's `FairseqModel.load_state_dict` (key upgrades, pruning), each tensor placed like its parameter."""
        from fairseq.checkpoint_utils import prune_state_dict

        self.module.upgrade_state_dict(state_dict)
        state_dict = prune_state_dict(state_dict, model_cfg)
        current = self.module.state_dict()
        placed = {key: sharding.to_dtensor(value, current[key], key)
                  if key in current and sharding.is_sharded(current[key]) and not sharding.is_sharded(value) else value
                  for key, value in state_dict.items()}
        return nn.Module.load_state_dict(self.module, placed, strict=strict)

    def local_metadata_dict(self):
        """Saved as the checkpoint's `fsdp_metadata`: enough to check that shards belong together and to
        consolidate them (`xlmr consolidate`)."""
        state = self.module.state_dict()
        world = dist.get_world_size(distributed_utils.get_data_parallel_group())
        return {"world_size": world, "rank": self.rank, "sharded_state": self.use_sharded_state,
                "run_id": self.run_id, "sharded_keys": sharding.sharded_keys(state)}

    def gather_full_optim_state_dict(self, optimizer):
        """The optimizer state with whole tensors (an unsharded AdamW's), on rank 0; None elsewhere."""
        state = optimizer.optimizer.state_dict()
        keep = self.rank == 0
        whole = {index: sharding.full_state(entries, keep) for index, entries in state["state"].items()}
        return dict(state, state=whole) if keep else None

    def get_shard_from_optim_state_dict(self, state):
        return state  # xlmr_fused_adam cuts whole tensors to this rank itself


class FullyShardedTrainer(Trainer):
    """fairseq's Trainer with `is_fsdp` on FSDP2: the model sharded one Transformer layer per unit."""

    def __init__(self, cfg, task, model, criterion, quantizer=None):
        if utils.has_parameters(criterion):
            raise ValueError(
                f"criterion {type(criterion).__name__} has parameters, which ddp_backend '{BACKEND}' does not shard "
                "or synchronise. Fix: a criterion without parameters, or ddp_backend=legacy_ddp.")
        self.cuda = torch.cuda.is_available() and not cfg.common.cpu
        group = distributed_utils.get_data_parallel_group()
        mesh = DeviceMesh.from_group(group, "cuda" if self.cuda else "cpu")
        bf16 = bool(cfg.model.get("bf16_autocast")) and self.cuda
        sharding.shard(model, model.sharding_units(), mesh, bf16=bf16,
                       reshard_after_forward=not cfg.distributed_training.no_reshard_after_forward)
        run_id = [uuid.uuid4().hex]
        dist.broadcast_object_list(run_id, src=dist.get_global_rank(group, 0), group=group)
        self._constructing = True  # fairseq's constructor would import fairscale for is_fsdp
        super().__init__(cfg, task, model, criterion, quantizer)
        self._constructing = False
        self._sharded_model = FullyShardedModel(self._model, cfg.distributed_training.use_sharded_state, run_id[0])
        self._memory_logged = False
        logger.info("fully sharded over %d ranks (FSDP2): %d Transformer layers as units, %s compute, "
                    "checkpoints %s", self.data_parallel_world_size, len(model.sharding_units()),
                    "bfloat16 (float32 master weights and reductions)" if bf16 else "float32",
                    "one file per rank (-shard<rank>)" if self._sharded_model.use_sharded_state
                    else "gathered to rank 0")

    @property
    def is_fsdp(self):
        return not getattr(self, "_constructing", False) and super().is_fsdp

    @property
    def use_distributed_wrapper(self) -> bool:
        return False  # FSDP2 shards the model in place; the trainer moves nothing

    @property
    def model(self):
        return self._sharded_model

    def clip_grad_norm(self, clip_norm):
        """The norm of the whole gradient, from each rank's squared sum over its shards; clipped as fairseq does."""
        grads = [p.grad for p in self.optimizer.params if p.grad is not None]
        squares = torch.zeros((), dtype=torch.float32, device=self.device)
        for grad in grads:
            squares += sharding.local(grad).float().pow(2).sum()
        dist.all_reduce(squares, group=self.data_parallel_process_group)
        total_norm = squares.sqrt()
        if clip_norm > 0:
            coef = (clip_norm / (total_norm + 1e-6)).clamp_(max=1)
            for grad in grads:
                sharding.local(grad).mul_(coef.to(grad.dtype))
        return total_norm

    def train_step(self, samples, raise_oom=False):
        output = super().train_step(samples, raise_oom)
        if not self._memory_logged and self.optimizer.optimizer.state:
            self._memory_logged = True
            self.log_memory()
        return output

    def log_memory(self):
        """Each rank's bytes of parameters and optimizer state against the unsharded ones, logged by rank 0
        (fairseq silences the others' logs)."""
        params, moments = list(self._model.parameters()), optimizer_tensors(self.optimizer)
        mine = (sharding.held_bytes(params), sharding.whole_bytes(params),
                sharding.held_bytes(moments), sharding.whole_bytes(moments))
        every = [None] * self.data_parallel_world_size
        dist.all_gather_object(every, mine, group=self.data_parallel_process_group)
        for rank, measured in enumerate(every):
            logger.info(describe_memory(rank, self.data_parallel_world_size, *measured))

    def save_checkpoint(self, filename, extra_state):
        # Every rank saves its own file: crash.pt becomes crash-shard<rank>.pt, like the regular checkpoints.
        suffix = self.checkpoint_suffix
        if self.model.use_sharded_state and not filename.endswith(suffix + ".pt"):
            filename = filename[:-len(".pt")] + suffix + ".pt"
        return super().save_checkpoint(filename, extra_state)

    def load_checkpoint(self, filename, *args, **kwargs):
        if self.model.use_sharded_state:
            filename = self.checked_shard_file(filename)
        return super().load_checkpoint(filename, *args, **kwargs)

    def checked_shard_file(self, filename: str) -> str:
        """This rank's shard of `filename` if every rank has one of the same save; else the unsharded checkpoint
        of the same name (`checkpoint_last.pt`, a consolidated `--restore-file`), cut to this rank on loading.
        Mixed or foreign shards are refused on every rank alike, before anything is loaded."""
        suffix = self.checkpoint_suffix
        if not filename.endswith(suffix + ".pt"):
            return filename  # named as it is (--finetune-from-model): an unsharded checkpoint
        unsharded = filename[:-len(suffix + ".pt")] + ".pt"
        meta = None
        if os.path.isfile(filename):  # mmap: the metadata is read, the tensors are not
            meta = torch.load(filename, map_location="cpu", mmap=True, weights_only=True).get("fsdp_metadata") or {}
        found = [None] * self.data_parallel_world_size
        dist.all_gather_object(found, (os.path.isfile(filename), meta), group=self.data_parallel_process_group)
        if not any(exists for exists, _ in found):
            return unsharded
        world = self.data_parallel_world_size
        pattern = unsharded[:-len(".pt")] + "-shard*.pt"
        written = {(m or {}).get("world_size") for _, m in found} - {None}
        if not all(exists for exists, _ in found) or written != {world} or len(glob(pattern)) != world:
            writers = ", ".join(str(w) for w in sorted(written)) or "an unknown number of"
            raise ValueError(
                f"{pattern} ({len(glob(pattern))} files) were written by {writers} ranks, but this run has "
                f"distributed_world_size {world}; a sharded checkpoint resumes with the world size that wrote it. "
                f"Fix: run with distributed_training.distributed_world_size={min(written) if written else '...'}, "
                f"or make one unsharded checkpoint of it (`xlmr consolidate {pattern.replace('*', '0')} "
                f"--training-state --out {unsharded}`), move the shard files away and rerun: a sharded run of any "
                "size resumes from that.")
        runs = {m.get("run_id") for _, m in found}
        ranks = [m.get("rank") for _, m in found]
        if len(runs) != 1 or ranks != list(range(world)):
            raise ValueError(
                f"the files {pattern} do not belong to one save (ranks {ranks}, runs {sorted(map(str, runs))}): a "
                "save was cut short or files were copied in from another run. Fix: resume from an earlier complete "
                "set with --restore-file (e.g. a checkpoint_<epoch>_<update>.pt whose shards all exist).")
        return filename


def optimizer_tensors(optimizer):
    return [value for entries in optimizer.optimizer.state.values() for value in entries.values()
            if torch.is_tensor(value)]


def describe_memory(rank: int, world: int, held_params: int, whole_params: int, held_moments: int,
                    whole_moments: int) -> str:
    """'rank 0 of 2 holds 153052 bytes of parameters (50.04% of the unsharded 305844) and ...'."""
    return (f"rank {rank} of {world} holds {held_params} bytes of parameters ({100 * held_params / whole_params:.2f}% "
            f"of the unsharded {whole_params}) and {held_moments} bytes of optimizer state "
            f"({100 * held_moments / max(whole_moments, 1):.2f}% of the unsharded {whole_moments})")


def sharded_trainer(trainer_cls):
    def make_trainer(cfg, task, model, criterion, quantizer=None):
        cls = FullyShardedTrainer if cfg.distributed_training.ddp_backend == BACKEND else trainer_cls
        return cls(cfg, task, model, criterion, quantizer)

    return make_trainer


def no_fairscale_wrap_context(fsdp_enable_wrap):
    return lambda cfg: contextlib.nullcontext()  # sharding happens in FullyShardedTrainer, with the whole cfg


def no_fairscale_wrap(fsdp_wrap):
    return lambda module, *args, **kwargs: module


def patch_module(module) -> None:
    """Replace the trainer and fairscale's wrapping in fairseq_cli.train (or `__main__` run as that file)."""
    if module is None or not all(hasattr(module, name) for name in ("Trainer", "fsdp_enable_wrap", "fsdp_wrap")):
        return
    replace(module, "Trainer", sharded_trainer)
    replace(module, "fsdp_enable_wrap", no_fairscale_wrap_context)
    replace(module, "fsdp_wrap", no_fairscale_wrap)


def apply() -> None:
    # As for training_loop: fairseq-train imports fairseq_cli.train before the plugin; otherwise our `call_main`
    # (patches/distributed_launch.py) patches it when training starts, and checks the config there.
    patch_module(sys.modules.get("fairseq_cli.train"))
