"""fairseq_xlmr: XLM-R (Conneau et al., 2020) pretraining and analysis as a fairseq plugin.

`fairseq-train --user-dir fairseq_xlmr` imports this package. fairseq only auto-imports the
`tasks/` and `models/` folders of a user dir, so every registered component is imported here.
"""

from fairseq_xlmr import checkpoint  # noqa: F401  (allow-lists fairseq's checkpoint globals)
from fairseq_xlmr.models import xlmr_encoder  # noqa: F401
from fairseq_xlmr.optim import xlmr_fused_adam  # noqa: F401
from fairseq_xlmr.data import language_sampling, masking  # noqa: F401
from fairseq_xlmr.tasks import xlmr_mlm  # noqa: F401
from fairseq_xlmr.criterions import xlmr_mlm as xlmr_mlm_criterion  # noqa: F401
from fairseq_xlmr.tasks import xlmr_span_qa  # noqa: F401
from fairseq_xlmr.criterions import xlmr_span_qa as xlmr_span_qa_criterion  # noqa: F401
from fairseq_xlmr.tasks import xlmr_sentence_classification, xlmr_token_classification  # noqa: F401
from fairseq_xlmr.criterions import xlmr_sentence_classification as xlmr_sentence_classification_criterion  # noqa: F401
from fairseq_xlmr.criterions import xlmr_token_classification as xlmr_token_classification_criterion  # noqa: F401
from fairseq_xlmr import distributed, fault_tolerance  # noqa: F401  (launch checks, preemption, atomic checkpoints)
from fairseq_xlmr.tasks import xlmr_alignment  # noqa: F401  (TLM + contrastive alignment)
from fairseq_xlmr.criterions import xlmr_alignment as xlmr_alignment_criterion  # noqa: F401
from fairseq_xlmr.criterions import xlmr_adversarial_mlm, xlmr_distillation  # noqa: F401  (model fusion)
