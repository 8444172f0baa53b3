"""Every change fairseq_xlmr makes to fairseq itself, one module each, all checked on ve-fairseq 0.12.3.

- checkpoint_loading: `checkpoint_utils.load_checkpoint_to_cpu` and torch's safe globals; fairseq checkpoints load on
  PyTorch >= 2.6 with `weights_only=True`, and a damaged or unsafe file gets a readable error.
- atomic_checkpoints: `checkpoint_utils.torch_persistent_save` and `checkpoint_utils.PathManager`; a killed run never
  leaves a truncated checkpoint_last.pt.
- training_loop: `fairseq_cli.train.train` and `validate_and_save`; save and stop on SLURM preemption, a divergence
  names the fix.
- nan_detector: `trainer.NanDetector`; the NaN diagnosis no longer crashes and hides the error.
- distributed_launch: `distributed.utils.call_main`; launches fairseq gets silently wrong are refused, one process
  per SLURM or torchrun task.
- broadcast: `distributed.utils._broadcast_object_slow`; multi-process runs resume on PyTorch >= 2.6.
- arch_names: `options.add_model_args`; an unknown `--arch xlmr_*` lists our architectures, not fairseq's ~160.
- fully_sharded: `Trainer`, `fsdp_enable_wrap`, `fsdp_wrap` of `fairseq_cli.train`; `--ddp-backend fully_sharded`
  shards xlmr_encoder per layer with PyTorch's FSDP2 instead of fairscale (CUDA-only, unmaintained).

`apply()` installs them all, once: `fairseq_xlmr.components` calls it when the plugin registers.
"""

from fairseq_xlmr.patches import (
    arch_names,
    atomic_checkpoints,
    broadcast,
    checkpoint_loading,
    distributed_launch,
    fully_sharded,
    nan_detector,
    training_loop,
)

PATCHES = (checkpoint_loading, atomic_checkpoints, training_loop, nan_detector, distributed_launch, broadcast,
           arch_names, fully_sharded)


def apply() -> None:
    for patch in PATCHES:
        patch.apply()
