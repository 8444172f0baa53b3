"""Cross-lingual sentence(-pair) classification (XNLI, PAWS-X) as fine-tuned in XLM-R (Conneau et al., 2020).

Pairs are encoded `<s> A </s></s> B </s>`; one classification head on `<s>` (or, with `--pooling mean`, on
the mean of the states, for probes of a frozen encoder). Per-language dev
accuracy and its all-language average (`accuracy`, the paper's model-selection criterion) are logged.
"""

import logging
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
import torch
from fairseq.data import (
    IdDataset,
    ListDataset,
    NestedDictionaryDataset,
    NumelDataset,
    NumSamplesDataset,
    RawLabelDataset,
    RightPadDataset,
    SortDataset,
    data_utils,
)
from fairseq.dataclass import ChoiceEnum
from fairseq.tasks import register_task

from fairseq_xlmr.data import readers
from fairseq_xlmr.finetune.classification import XlmrClassificationConfig, XlmrClassificationTask

logger = logging.getLogger(__name__)

SENTENCE_FORMAT_CHOICES = ChoiceEnum(["xnli", "xnli_jsonl", "pawsx", "tsv", "jsonl"])
POOLING_CHOICES = ChoiceEnum(["model", "cls", "mean"])


@dataclass
class XlmrSentenceClassificationConfig(XlmrClassificationConfig):
    data_format: SENTENCE_FORMAT_CHOICES = field(default="tsv", metadata={"help":
        "file format: xnli (XNLI-1.0 dev/test, MultiNLI and XNLI-MT train tsv, told apart by the header), "
        "xnli_jsonl, pawsx (id, sentence1, sentence2, label), or tsv/jsonl with the columns named below"})
    text_column: str = field(default="sentence1", metadata={"help": "first-text column (formats tsv, jsonl)"})
    text_b_column: str = field(default="sentence2", metadata={"help":
        "second-text column (formats tsv, jsonl); empty for single-sentence tasks"})
    label_column: str = field(default="label", metadata={"help": "label column (formats tsv, jsonl)"})
    language_column: str = field(default="language", metadata={"help":
        "language column of multi-language files (formats tsv, jsonl)"})
    classification_head_name: str = field(default="xlmr_sentence_classification", metadata={"help":
        "name of the classification head registered on the model"})
    pooling: POOLING_CHOICES = field(default="model", metadata={"help":
        "what the head reads: model (the pooling the pretrained model records, `model.sentence_pooling`: cls for "
        "XLM-R, mean for multilingual-e5), cls (the <s> state, RoBERTa's and XLM-R's head) or mean (the mean of the "
        "non-pad states, as sentence-embedding probes read them: an MLM-only encoder's <s> state is trained for "
        "nothing, so a probe of a frozen encoder, --freeze-layers = all layers, should read mean)"})


def head_pooling(pooling: str, model_args) -> str:
    """What a sentence head reads ('cls' or 'mean'): `task.pooling`, or for 'model' the encoder's own
    `model.sentence_pooling` (checkpoints from before that option read <s>)."""
    return getattr(model_args, "sentence_pooling", "cls") if pooling == "model" else pooling


def truncate_longest_first(len_a: int, len_b: int, budget: int) -> Tuple[int, int]:
    """Lengths that fit `budget` tokens, cutting one token at a time from the longer side.

    This is HF's "longest_first" (XTREME's setting): a short hypothesis is never cut to keep a long
    premise whole. (5, 3, 6) -> (3, 3); (10, 2, 6) -> (4, 2).
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    excess = len_a + len_b - budget
    if excess <= 0:
        return len_a, len_b
    # Cut the longer side down to the shorter one, then alternate, B first on ties (HF's token loop).
    cut_a = min(excess, max(0, len_a - len_b))
    cut_b = min(excess - cut_a, max(0, len_b - len_a))
    rest = excess - cut_a - cut_b
    cut_b += (rest + 1) // 2
    cut_a += rest // 2
    return len_a - cut_a, len_b - cut_b


def encode_example(a: np.ndarray, b: Optional[np.ndarray], max_tokens: int, bos: int, eos: int) -> List[int]:
    """`<s> A </s>` or `<s> A </s></s> B </s>` of at most `max_tokens` tokens (the longer text is cut)."""
    if b is None:
        return [bos] + a[: max_tokens - 2].tolist() + [eos]
    len_a, len_b = truncate_longest_first(len(a), len(b), max_tokens - 4)
    return [bos] + a[:len_a].tolist() + [eos, eos] + b[:len_b].tolist() + [eos]


@register_task("xlmr_sentence_classification", dataclass=XlmrSentenceClassificationConfig)
class XlmrSentenceClassificationTask(XlmrClassificationTask):
    """Batches: `net_input.src_tokens` (batch, seq_len), `target` (batch,) label ids (positions in
    `labels`), `language` (batch,) positions in `languages`."""

    cfg: XlmrSentenceClassificationConfig

    def read_file(self, path: str, language: Optional[str]) -> list:
        fmt = self.cfg.data_format
        if fmt == "xnli":
            return readers.read_xnli_tsv(path, language)
        if fmt == "xnli_jsonl":
            return readers.read_xnli_jsonl(path, language)
        if fmt == "pawsx":
            return readers.read_pawsx_tsv(path, language)
        read = readers.read_labelled_tsv if fmt == "tsv" else readers.read_labelled_jsonl
        return read(path, self.cfg.text_column, self.cfg.label_column, self.cfg.text_b_column,
                    self.cfg.language_column, language)

    def example_labels(self, example) -> List[str]:
        return [example.label]

    def add_head(self, model):
        model.register_classification_head(self.cfg.classification_head_name, num_classes=len(self.labels))

    def build_dataset(self, split: str, examples: list):
        bos, eos, pad = self.dictionary.bos(), self.dictionary.eos(), self.dictionary.pad()
        label_ids = {label: i for i, label in enumerate(self.labels)}
        language_ids = {lang: i for i, lang in enumerate(self.languages)}
        # SentencePiece ids of every text, then <s> A </s></s> B </s> cut to max_length.
        texts_a = self.encode_texts([e.text_a for e in examples])
        pairs = examples and examples[0].text_b is not None
        texts_b = self.encode_texts([e.text_b for e in examples]) if pairs else [None] * len(examples)
        tokens = [torch.tensor(encode_example(a, b, self.cfg.max_length, bos, eos))
                  for a, b in zip(texts_a, texts_b)]
        src_tokens = ListDataset(tokens, sizes=np.array([len(t) for t in tokens]))
        # Padded inputs, their lengths, the label and the language of every example.
        dataset = NestedDictionaryDataset(
            {
                "id": IdDataset(),
                "net_input": {
                    "src_tokens": RightPadDataset(src_tokens, pad_idx=pad),
                    "src_lengths": NumelDataset(src_tokens, reduce=False),
                },
                "target": RawLabelDataset([label_ids[e.label] for e in examples]),
                "language": RawLabelDataset([language_ids[e.language] for e in examples]),
                "nsentences": NumSamplesDataset(),
                "ntokens": NumelDataset(src_tokens, reduce=True),
            },
            sizes=[src_tokens.sizes],
        )
        # One seeded shuffle (as fairseq's sentence_prediction); the batch order changes every epoch.
        with data_utils.numpy_seed(self.cfg.seed):
            shuffle = np.random.permutation(len(dataset))
        return SortDataset(dataset, sort_order=[shuffle])
