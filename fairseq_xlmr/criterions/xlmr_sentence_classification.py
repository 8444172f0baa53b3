"""Cross-entropy for sentence(-pair) classification with per-language accuracy (XLM-R, Conneau et al., 2020)."""

from dataclasses import dataclass

import torch.nn.functional as F
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass

from fairseq_xlmr.evaluation.metrics import add_language_counts, per_language, reduce_loss_and_language_metrics
from fairseq_xlmr.modules.pooling import pool_sequence
from fairseq_xlmr.tasks.xlmr_sentence_classification import head_pooling


@dataclass
class XlmrSentenceClassificationCriterionConfig(FairseqDataclass):
    """No options: the head name, its pooling and the labels live in the task."""


@register_criterion("xlmr_sentence_classification", dataclass=XlmrSentenceClassificationCriterionConfig)
class XlmrSentenceClassificationCriterion(FairseqCriterion):
    """Cross-entropy summed over sentences; logs `accuracy_<lang>` and their average `accuracy`.

    Needs task `xlmr_sentence_classification` (batches with `target` and `language`).
    """

    def __init__(self, cfg: XlmrSentenceClassificationCriterionConfig, task):
        super().__init__(task)
        if not hasattr(task.cfg, "classification_head_name"):
            raise ValueError(f"criterion xlmr_sentence_classification needs --task xlmr_sentence_classification, "
                             f"got {type(task).__name__}.")
        self.head_name = task.cfg.classification_head_name
        self.pooling = getattr(task.cfg, "pooling", "cls")  # checkpoints from before --pooling read <s>
        self.pad = task.source_dictionary.pad()
        self.languages = task.languages

    def sentence_vectors(self, model, net_input):
        """`(batch, dim)`: what the head reads, the `<s>` state or the mean of the non-pad states."""
        states, _ = model(**net_input, features_only=True)  # (batch, seq_len, dim)
        return pool_sequence(states, net_input["src_tokens"].ne(self.pad), head_pooling(self.pooling, model.args))

    def sentence_logits(self, model, net_input, language=None, center_shift=None):
        """`(batch, num_labels)`: RoBERTa's head on `<s>`, or the same head on the mean of the non-pad states.

        center_shift: optional `(num_languages, dim)`, added to each sentence vector by its `language` (batch,)
        positions in task.languages before the head (`xlmr finetune-eval --center`).
        """
        if head_pooling(self.pooling, model.args) == "cls" and center_shift is None:  # RoBERTa's head picks position 0 itself
            return model(**net_input, features_only=True, classification_head_name=self.head_name)[0]
        head = model.classification_heads[self.head_name]
        vectors = self.sentence_vectors(model, net_input).to(head.dense.weight.dtype)  # bf16 autocast states
        if center_shift is not None:
            vectors = vectors + center_shift[language].to(vectors)
        return head(vectors.unsqueeze(1))  # the head reads position 0

    def forward(self, model, sample, reduce=True, center_shift=None):
        """sample["target"], sample["language"]: (batch,); center_shift: see `sentence_logits`. Returns (loss,
        batch size, logging output)."""
        logits = self.sentence_logits(model, sample["net_input"], sample["language"], center_shift)
        targets = sample["target"]  # (batch,) positions in task.labels
        loss = F.cross_entropy(logits.float(), targets, reduction="sum")  # logits: (batch, num_labels)
        sample_size = targets.numel()
        logging_output = {
            "loss": loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample_size,
            "sample_size": sample_size,
        }
        correct = logits.argmax(dim=-1).eq(targets)
        num_languages = len(self.languages)
        add_language_counts(logging_output, "correct", self.languages,
                            per_language(correct, sample["language"], num_languages))
        add_language_counts(logging_output, "total", self.languages,
                            per_language(correct.new_ones(correct.shape), sample["language"], num_languages))
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        """`loss` in bits per sentence, `accuracy_<lang>` and `accuracy` (percent)."""
        reduce_loss_and_language_metrics(logging_outputs)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
