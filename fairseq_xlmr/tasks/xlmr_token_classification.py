"""Cross-lingual tagging (NER, POS) as fine-tuned in XLM-R (Conneau et al., 2020) and XTREME (Hu et al., 2020).

A word's label goes on its first SentencePiece piece; sentences longer than the input are cut into
overlapping windows and every word is scored in exactly one of them, in training and in evaluation,
so no word is dropped. Metrics per language and averaged: entity-level F1 (NER) or accuracy (POS).
"""

import logging
from dataclasses import dataclass, field
from typing import List, Optional

from fairseq.dataclass import ChoiceEnum
from fairseq.tasks import register_task

from fairseq_xlmr.data import readers
from fairseq_xlmr.data.label_alignment import windowed_examples
from fairseq_xlmr.data.tagging_dataset import TaggingWindowsDataset
from fairseq_xlmr.files import ENCODINGS
from fairseq_xlmr.finetune.classification import XlmrClassificationConfig, XlmrClassificationTask

logger = logging.getLogger(__name__)

TAGGING_FORMAT_CHOICES = ChoiceEnum(["conll", "wikiann", "conllu"])
TAGGING_METRIC_CHOICES = ChoiceEnum(["f1", "accuracy"])
ENCODING_CHOICES = ChoiceEnum(list(ENCODINGS))


@dataclass
class XlmrTokenClassificationConfig(XlmrClassificationConfig):
    data_format: TAGGING_FORMAT_CHOICES = field(default="conll", metadata={"help":
        "file format: conll (CoNLL-2002/2003 NER, `word ... label`), wikiann (PAN-X, `lang:word<TAB>label`) "
        "or conllu (Universal Dependencies, UPOS tags)"})
    metric: TAGGING_METRIC_CHOICES = field(default="f1", metadata={"help":
        "f1: entity-level F1 as seqeval/conlleval score it (NER); accuracy: per-word accuracy (POS)"})
    label_column: int = field(default=-1, metadata={"help":
        "column of the label in conll files (-1: the last, the NER tag in CoNLL-2002 and 2003)"})
    encoding: ENCODING_CHOICES = field(default="auto", metadata={"help":
        "file encoding; auto reads UTF-8 and falls back to Latin-1 (the CoNLL-2002 es/nl files)"})
    window_stride: int = field(default=0, metadata={"help":
        "pieces from one window's start to the next one's, for sentences longer than --max-length; "
        "smaller gives each word more context and costs more windows; 0: half of --max-length"})
    token_head_name: str = field(default="xlmr_token_classification", metadata={"help":
        "name of the per-token head registered on the model"})


@register_task("xlmr_token_classification", dataclass=XlmrTokenClassificationConfig)
class XlmrTokenClassificationTask(XlmrClassificationTask):
    """Batches are windows of sentences (see `TaggingWindowsDataset`); targets are label ids (positions
    in `labels`) on first pieces of the words a window scores, IGNORE_INDEX elsewhere."""

    cfg: XlmrTokenClassificationConfig

    @classmethod
    def check_config(cls, cfg: XlmrTokenClassificationConfig):
        super().check_config(cfg)
        if not 0 <= cfg.window_stride <= cfg.max_length - 2:
            raise ValueError(f"`task.window_stride` must be in [0, max_length - 2 = {cfg.max_length - 2}], got "
                             f"{cfg.window_stride}; 0 (the default) takes half of max_length.")

    @classmethod
    def metric_name(cls, cfg) -> str:
        return str(cfg.metric)

    def read_file(self, path: str, language: Optional[str]) -> list:
        if self.cfg.data_format == "conll":
            if language is None:
                raise ValueError("CoNLL files hold one language each: put `{lang}` in the file patterns.")
            return readers.read_conll(path, language, self.cfg.label_column, self.cfg.encoding)
        if self.cfg.data_format == "wikiann":
            return readers.read_wikiann(path, language, self.cfg.encoding)
        if language is None:
            raise ValueError("CoNLL-U files hold one language each: put `{lang}` in the file patterns.")
        return readers.read_conllu(path, language, self.cfg.encoding)

    def example_labels(self, example) -> List[str]:
        return list(example.labels)

    def add_head(self, model):
        model.register_token_head(self.cfg.token_head_name, len(self.labels))

    @property
    def window_stride(self) -> int:
        return self.cfg.window_stride or self.cfg.max_length // 2

    def encode_words(self, words: List[str]) -> List[List[int]]:
        """Pieces of each word, encoded on its own (so it starts with '▁'); a word SentencePiece
        drops entirely (e.g. a lone zero-width space) becomes <unk>, so it still gets a prediction."""
        unk = self.dictionary.unk()
        return [ids.tolist() or [unk] for ids in self.encode_texts(words)]

    def build_dataset(self, split: str, examples: list):
        label_ids = {label: i for i, label in enumerate(self.labels)}
        language_ids = {lang: i for i, lang in enumerate(self.languages)}
        # One SentencePiece call for every word of the split, then cut back into sentences.
        pieces = self.encode_words([word for example in examples for word in example.words])
        windows, start = [], 0
        for example in examples:
            word_pieces = pieces[start:start + len(example.words)]
            start += len(example.words)
            # First-piece labels, split into windows of max_length; each word scored once.
            windows.append(windowed_examples(word_pieces, [label_ids[label] for label in example.labels],
                                             self.cfg.max_length, self.window_stride,
                                             self.dictionary.bos(), self.dictionary.eos()))
        split_sentences = sum(len(w) > 1 for w in windows)
        if split_sentences:
            logger.info("%s: %d of %d sentences exceed %d tokens and are split into windows", split,
                        split_sentences, len(windows), self.cfg.max_length)
        return TaggingWindowsDataset(windows, [language_ids[example.language] for example in examples],
                                     [len(example.words) for example in examples], pad=self.dictionary.pad(),
                                     seed=self.cfg.seed)
