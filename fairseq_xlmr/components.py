"""Every registered component of fairseq_xlmr, and the fairseq patches: importing this module registers them
all with fairseq (and imports torch and fairseq).

fairseq only auto-imports the `tasks/` and `models/` folders of a user dir, so each component is imported
here explicitly. `fairseq_xlmr/__init__.py` imports this module when fairseq is already loaded (`--user-dir`,
`common.user_dir`, the Hydra callback below); code that hands fairseq a task, a checkpoint or a `--user-dir`
after a plain `import fairseq_xlmr` imports it itself (see docs/architecture.md).
"""

from hydra.experimental.callback import Callback

# Each import registers what its module defines (fairseq's register_* decorators run at import).
import fairseq_xlmr.criterions.xlmr_adversarial_mlm  # noqa: F401
import fairseq_xlmr.criterions.xlmr_alignment  # noqa: F401
import fairseq_xlmr.criterions.xlmr_distillation  # noqa: F401
import fairseq_xlmr.criterions.xlmr_mlm  # noqa: F401
import fairseq_xlmr.criterions.xlmr_sentence_classification  # noqa: F401
import fairseq_xlmr.criterions.xlmr_span_qa  # noqa: F401
import fairseq_xlmr.criterions.xlmr_token_classification  # noqa: F401
import fairseq_xlmr.models.xlmr_encoder  # noqa: F401
import fairseq_xlmr.optim.xlmr_fused_adam  # noqa: F401
import fairseq_xlmr.tasks.xlmr_alignment  # noqa: F401
import fairseq_xlmr.tasks.xlmr_mlm  # noqa: F401
import fairseq_xlmr.tasks.xlmr_sentence_classification  # noqa: F401
import fairseq_xlmr.tasks.xlmr_span_qa  # noqa: F401
import fairseq_xlmr.tasks.xlmr_token_classification  # noqa: F401
from fairseq_xlmr import patches

patches.apply()


class PluginCallback(Callback):
    """Hydra callback that only imports this module, before fairseq-hydra-train launches.

    Named in hydra_configs/run_config/*.yaml (`hydra.callbacks`): Hydra instantiates callbacks before
    it runs the job, so our `call_main` checks and CPU path (patches/distributed_launch.py) are in place
    when fairseq infers ranks.
    """
