"""Cross-entropy on first sub-word pieces for tagging (NER, POS), with per-language accuracy and
entity-level F1 (XLM-R, Conneau et al., 2020, Table 2)."""

from dataclasses import dataclass

import torch.nn.functional as F
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass

from fairseq_xlmr.data.label_alignment import IGNORE_INDEX, collect_word_predictions
from fairseq_xlmr.evaluation.metrics import add_language_counts, entity_counts, per_language, reduce_loss_and_language_metrics


@dataclass
class XlmrTokenClassificationCriterionConfig(FairseqDataclass):
    """No options: the head name, metric and labels live in the task."""


@register_criterion("xlmr_token_classification", dataclass=XlmrTokenClassificationCriterionConfig)
class XlmrTokenClassificationCriterion(FairseqCriterion):
    """Cross-entropy summed over scored words; logs `accuracy_<lang>`/`accuracy` and, in evaluation
    with `--metric f1`, entity-level `f1_<lang>`/`f1` over whole sentences (windows put back together).

    Needs task `xlmr_token_classification`.
    """

    def __init__(self, cfg: XlmrTokenClassificationCriterionConfig, task):
        super().__init__(task)
        if not hasattr(task.cfg, "token_head_name"):
            raise ValueError(f"criterion xlmr_token_classification needs --task xlmr_token_classification, "
                             f"got {type(task).__name__}.")
        self.head_name = task.cfg.token_head_name
        self.entity_f1 = task.cfg.metric == "f1"
        self.task = task

    def forward(self, model, sample, reduce=True):
        """sample["target"]: (windows, seq_len) label ids or IGNORE_INDEX; see TaggingWindowsDataset.
        Returns (loss summed over scored words, number of scored words, logging output)."""
        logits, _ = model(**sample["net_input"], token_head_name=self.head_name)  # (windows, seq_len, labels)
        target = sample["target"]
        scored = target.ne(IGNORE_INDEX)
        loss = F.cross_entropy(logits[scored].float(), target[scored], reduction="sum")
        sample_size = int(scored.sum())
        logging_output = {
            "loss": loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample["nsentences"],
            "sample_size": sample_size,
        }
        predictions = logits.argmax(dim=-1)  # (windows, seq_len)
        languages = self.task.languages
        word_language = sample["language"][sample["window_sentence"]][:, None].expand_as(target)[scored]
        correct = predictions[scored].eq(target[scored])
        add_language_counts(logging_output, "correct", languages, per_language(correct, word_language, len(languages)))
        add_language_counts(logging_output, "total", languages,
                            per_language(correct.new_ones(correct.shape), word_language, len(languages)))
        if self.entity_f1 and not model.training:
            self._add_entity_counts(logging_output, sample, predictions)
        return loss, sample_size, logging_output

    def _add_entity_counts(self, logging_output, sample, predictions):
        """Entity counts per language over whole sentences: windows are mapped back to words first,
        so an entity across a window boundary is scored as one."""
        args = (sample["word_index"].tolist(), sample["window_sentence"].tolist(), sample["num_words"].tolist())
        predicted = collect_word_predictions(args[0], predictions.tolist(), args[1], args[2])
        gold = collect_word_predictions(args[0], sample["target"].tolist(), args[1], args[2])
        labels, languages = self.task.labels, self.task.languages
        counts = {name: [0] * len(languages) for name in ("tp", "npred", "ngold")}
        for sentence, lang in enumerate(sample["language"].tolist()):
            tp, npred, ngold = entity_counts([labels[i] for i in gold[sentence]],
                                             [labels[i] for i in predicted[sentence]])
            counts["tp"][lang] += tp
            counts["npred"][lang] += npred
            counts["ngold"][lang] += ngold
        for name, values in counts.items():
            add_language_counts(logging_output, name, languages, values)

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        """`loss` in bits per scored word, `accuracy[_<lang>]` and, in evaluation, `f1[_<lang>]` (percent)."""
        reduce_loss_and_language_metrics(logging_outputs)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
