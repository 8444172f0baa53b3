"""Replaces `fairseq.checkpoint_utils.load_checkpoint_to_cpu` (checked on ve-fairseq 0.12.3): fairseq's checkpoints
load on PyTorch >= 2.6 with `weights_only=True` kept on, and a damaged or unsafe file gets a readable error.

fairseq's loader (resume, `--finetune-from-model`, evaluation) calls `torch.load` with PyTorch's default
`weights_only=True`, which refuses the `argparse.Namespace` every fairseq checkpoint pickles. We allow-list the
harmless globals of `fairseq_xlmr.checkpoint.SAFE_GLOBALS` for every `torch.load` of the process, and turn the
unpickler's refusal of anything else, or a file cut short, into the errors of `fairseq_xlmr.checkpoint.load`.
"""

from fairseq import checkpoint_utils

from fairseq_xlmr import checkpoint
from fairseq_xlmr.patches.wrapping import replace


def readable_errors(load_checkpoint_to_cpu):
    def wrapper(path, *args, **kwargs):
        try:
            return load_checkpoint_to_cpu(path, *args, **kwargs)
        except (checkpoint.UnsafeCheckpointError, checkpoint.DamagedCheckpointError):
            raise
        except Exception as err:  # re-raised unchanged unless diagnosed
            ours = checkpoint.explain(path, err)
            if ours is None:
                raise
            raise ours from None

    return wrapper


def apply() -> None:
    checkpoint.allow_safe_globals()
    # trainer.py and checkpoint_utils.load_model_ensemble_and_task look the loader up at call time.
    replace(checkpoint_utils, "load_checkpoint_to_cpu", readable_errors)
