"""Every change fairseq_xlmr makes to fairseq itself, one module each, all checked on ve-fairseq 0.12.3.

| module | replaces | why |
|---|---|---|
| checkpoint_loading | `checkpoint_utils.load_checkpoint_to_cpu` (+ torch's safe globals) | load fairseq checkpoints on PyTorch >= 2.6 with `weights_only=True`; readable errors for damaged or unsafe files |
| atomic_checkpoints | `checkpoint_utils.torch_persistent_save`, `checkpoint_utils.PathManager` | a killed run never leaves a truncated checkpoint_last.pt |
| training_loop | `fairseq_cli.train.train`, `fairseq_cli.train.validate_and_save` | save and stop on SLURM preemption; a divergence names the fix |
| nan_detector | `trainer.NanDetector` | the NaN diagnosis no longer crashes and hides the error |
| distributed_launch | `distributed.utils.call_main` | refuse launches fairseq gets silently wrong; one process per SLURM/torchrun task |
| broadcast | `distributed.utils._broadcast_object_slow` | multi-process runs can resume on PyTorch >= 2.6 |
| arch_names | `options.add_model_args` | an unknown `--arch xlmr_*` lists our architectures, not fairseq's ~160 |

`apply()` installs them all, once: `fairseq_xlmr.components` calls it when the plugin registers.
"""

from fairseq_xlmr.patches import (
    arch_names,
    atomic_checkpoints,
    broadcast,
    checkpoint_loading,
    distributed_launch,
    nan_detector,
    training_loop,
)

PATCHES = (checkpoint_loading, atomic_checkpoints, training_loop, nan_detector, distributed_launch, broadcast,
           arch_names)


def apply() -> None:
    for patch in PATCHES:
        patch.apply()
