"""Extractive QA: fine-tune on SQuAD, evaluate cross-lingually on MLQA / XQuAD (XLM-R, Conneau et al., 2020, Table 3).

Train on one SQuAD v1.1-format file (English SQuAD), validate on one dev file per language pair.
Validation decodes answers (n-best start/end over document-stride windows, best across an example's
windows) and logs EM/F1 per language (`f1_de`, `em_de`; `f1_de-en` for MLQA's G-XLT pairs, context
language first) and their averages `f1` / `em`, so `--best-checkpoint-metric f1
--maximize-best-checkpoint-metric` selects the model on the average dev F1, as the paper does.

Builds on the fine-tuning base (finetune/base.py): the same data, file, language, length, vocabulary and freezing
options, and the same checks of the model against the pretrained checkpoint.
"""

import logging
import os
import string
from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import torch
from fairseq.data import FairseqDataset, data_utils
from fairseq.dataclass import ChoiceEnum
from fairseq.logging import metrics
from fairseq.logging.meters import Meter
from fairseq.tasks import register_task
from omegaconf import II

from fairseq_xlmr.data.squad import (
    NUM_SPECIAL_TOKENS,
    EncodedText,
    QaExample,
    build_windows,
    keep_best,
    read_squad_json,
    window_answer,
)
from fairseq_xlmr.evaluation.qa_metrics import METRICS, check_language, exact_match, f1, max_over_gold
from fairseq_xlmr.files import parse_list
from fairseq_xlmr.finetune.base import XlmrFinetuneConfig, XlmrFinetuneTask

logger = logging.getLogger(__name__)

QA_HEAD = "qa"  # the 2-output token head (start, end logits) the task registers and the criterion reads
QA_METRIC_CHOICES = ChoiceEnum(list(METRICS))
PLACEHOLDERS = {"lang", "question"}  # of --valid-file and --test-file
SPANS_KEY = "_qa_spans"  # logging-output key of decoded answers; "_" keeps it out of the printed stats


@dataclass
class XlmrSpanQaConfig(XlmrFinetuneConfig):
    # The fine-tuning base's fields, with what they mean for SQuAD-format files.
    train_file: str = field(default="train-v1.1.json", metadata={"help":
        "training file in `data` (English SQuAD v1.1 for XLM-R's cross-lingual transfer)"})
    valid_file: str = field(default="dev-context-{lang}-question-{question}.json", metadata={"help":
        "dev file name in `data` for a language pair: {lang} the context language, {question} the question "
        "language (XQuAD: xquad.{lang}.json)"})
    test_file: str = field(default="test-context-{lang}-question-{question}.json", metadata={"help":
        "test file name in `data` (splits named test*), as --valid-file"})
    eval_languages: str = field(default="en", metadata={"help":
        "comma-separated context languages of the dev/test files, e.g. en,es,de,ar,hi,vi,zh (MLQA)"})
    max_length: int = field(default=384, metadata={"help":
        "tokens per window, <s> Q </s></s> C </s> included (XTREME: 384); at most the model's max_positions"})
    # QA's own.
    question_languages: str = field(default="", metadata={"help":
        "comma-separated question languages; empty: each file's question is in its context language "
        "(MLQA cross-lingual transfer); given: every context x question pair (MLQA G-XLT), logged as "
        "<context>-<question> when they differ"})
    doc_stride: int = field(default=128, metadata={"help":
        "context pieces between the starts of consecutive windows over a long context (XTREME: 128)"})
    max_query_length: int = field(default=64, metadata={"help":
        "questions are truncated to this many pieces (XTREME: 64)"})
    n_best: int = field(default=20, metadata={"help":
        "start and end candidates per window considered when decoding an answer (XTREME: 20)"})
    max_answer_length: int = field(default=30, metadata={"help":
        "longest decoded answer, in pieces (XTREME: 30)"})
    qa_metric: QA_METRIC_CHOICES = field(default="mlqa", metadata={"help":
        "answer normalisation of EM/F1: mlqa (MLQA's script, language-specific; its 7 languages only) "
        "or squad (SQuAD v1.1's script; XTREME uses it for XQuAD)"})
    train_subset: str = II("dataset.train_subset")
    valid_subset: str = II("dataset.valid_subset")


class LanguagePair(NamedTuple):
    context: str
    question: str

    @property
    def name(self) -> str:
        """Log-key suffix: `de`, or `de-en` for German contexts with English questions."""
        return self.context if self.context == self.question else f"{self.context}-{self.question}"


class QaSplit(NamedTuple):
    """A loaded split: its questions, their encoded contexts and which language pair each is from."""

    examples: List[QaExample]
    contexts: List[EncodedText]
    pair_ids: np.ndarray  # (num_examples,) index into pairs
    pairs: List[Optional[LanguagePair]]


class QaWindowDataset(FairseqDataset):
    """The windows of one split; batches carry `target` `(batch, 2)` (start, end) and the split name."""

    def __init__(self, windows, pad: int, split: str, seed: int, shuffle: bool):
        self.windows = windows
        self.pad = pad
        self.split = split
        self.seed = seed
        self.shuffle = shuffle
        self.sizes = np.array([len(w.tokens) for w in windows], dtype=np.int64)

    def __getitem__(self, index):
        return index

    def __len__(self):
        return len(self.windows)

    def num_tokens(self, index):
        return self.sizes[index]

    def size(self, index):
        return self.sizes[index]

    def ordered_indices(self):
        # Batch by size; ties broken by a seeded shuffle in training (as masked_lm's SortDataset).
        if not self.shuffle:
            return np.argsort(self.sizes, kind="stable")
        with data_utils.numpy_seed(self.seed):
            return np.lexsort((np.random.permutation(len(self)), self.sizes))

    def collater(self, indices):
        if not indices:
            return {}
        windows = [self.windows[i] for i in indices]
        tokens = data_utils.collate_tokens([torch.from_numpy(w.tokens.astype(np.int64)) for w in windows], self.pad)
        return {
            "id": torch.tensor(indices, dtype=torch.long),
            "nsentences": len(windows),
            "ntokens": int(sum(len(w.tokens) for w in windows)),
            "net_input": {
                "src_tokens": tokens,  # (batch, seq_len), right-padded
                "src_lengths": torch.tensor([len(w.tokens) for w in windows], dtype=torch.long),
            },
            "target": torch.tensor([[w.start, w.end] for w in windows], dtype=torch.long),  # (batch, 2)
            "split": self.split,
        }


class QaSpanMeter(Meter):
    """Best decoded answer per example over the windows seen so far; the F1/EM stats are derived from it."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.split = None
        self.best: Dict[int, Tuple[float, int, int]] = {}  # example -> (score, begin, end)
        self._scores = None

    def update(self, spans):
        for split, example, score, begin, end in spans:
            self.split = split
            keep_best(self.best, example, (score, begin, end))
        self._scores = None

    def scores(self, compute):
        """compute(split, best) -> scores, cached until the next update."""
        if self._scores is None:
            self._scores = compute(self.split, self.best)
        return self._scores

    @property
    def smoothed_value(self) -> float:
        return len(self.best)


@register_task("xlmr_span_qa", dataclass=XlmrSpanQaConfig)
class XlmrSpanQaTask(XlmrFinetuneTask):
    """Extractive QA: start/end logits from the token head `qa` over `<s> Q </s></s> C </s>` windows."""

    cfg: XlmrSpanQaConfig

    def __init__(self, cfg: XlmrSpanQaConfig, dictionary, sp, pairs: List[LanguagePair]):
        super().__init__(cfg, dictionary, sp)
        self.pairs = pairs
        self.splits: Dict[str, QaSplit] = {}

    @classmethod
    def setup_task(cls, cfg: XlmrSpanQaConfig, **kwargs):
        cls.check_config(cfg)
        pairs = language_pairs(cfg)
        check_data_files(cfg, pairs)
        task = cls(cfg, *cls.load_vocabulary(cfg), pairs)
        logger.info("evaluating %s", ", ".join(p.name for p in pairs))
        return task

    @classmethod
    def check_config(cls, cfg: XlmrSpanQaConfig) -> None:
        """Reject bad settings before any data is read."""
        for name in ("doc_stride", "max_query_length", "n_best", "max_answer_length"):
            if getattr(cfg, name) < 1:
                raise ValueError(f"`task.{name}` must be at least 1, got {getattr(cfg, name)}.")
        room = cfg.max_length - cfg.max_query_length - NUM_SPECIAL_TOKENS
        if room < cfg.doc_stride:
            raise ValueError(
                f"`task.max_length` {cfg.max_length} leaves {room} context pieces per window after a question of up "
                f"to `task.max_query_length` {cfg.max_query_length} pieces and {NUM_SPECIAL_TOKENS} special tokens; "
                f"it must leave at least `task.doc_stride` ({cfg.doc_stride}) or windows would skip context. Raise "
                "--max-length or lower --max-query-length / --doc-stride (XTREME: 384 / 64 / 128)."
            )
        for name in ("valid_file", "test_file"):
            names = {field for _, field, _, _ in string.Formatter().parse(getattr(cfg, name)) if field is not None}
            if not names <= PLACEHOLDERS:
                raise ValueError(f"`task.{name}` {getattr(cfg, name)!r} names {sorted(names - PLACEHOLDERS)}; a QA file "
                                 "name may hold {lang} (the context language) and {question} (the question language).")
        super().check_config(cfg)

    @classmethod
    def metric_name(cls, cfg) -> str:
        return "f1"

    @classmethod
    def logged_metrics(cls, cfg) -> List[str]:
        return ["f1", "em"]

    def add_head(self, model):
        if not hasattr(model, "register_token_head"):
            raise ValueError(f"task xlmr_span_qa needs a model with token heads (--arch xlmr_base, ...), got "
                             f"{type(model).__name__}.")
        model.register_token_head(QA_HEAD, 2)  # kept when the checkpoint being loaded already has it

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        """The train file for the training subset; one file per language pair for any other split."""
        is_train = split == self.cfg.train_subset
        files = [(None, os.path.join(self.cfg.data, self.cfg.train_file))] if is_train else self.split_files(split)
        examples, pair_ids = [], []
        for pair_index, (pair, path) in enumerate(files):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"no {split} file {path!r} for {pair.name if pair else 'training'}; "
                                        f"files in {self.cfg.data}: {', '.join(sorted(os.listdir(self.cfg.data)))}")
            loaded = read_squad_json(path)
            examples += loaded
            pair_ids += [pair_index] * len(loaded)
        # Every example becomes one or more windows `<s> Q </s></s> C </s>` with start/end targets.
        windows, contexts = build_windows(
            examples, self.sp, self.id_table, self.cfg.max_length, self.cfg.doc_stride, self.cfg.max_query_length,
            self.dictionary.bos(), self.dictionary.eos(),
        )
        outside = sum(w.start == 0 for w in windows)
        logger.info("%s: %d questions -> %d windows (%d without the answer, target <s>) from %s", split,
                    len(examples), len(windows), outside, ", ".join(os.path.basename(p) for _, p in files))
        self.splits[split] = QaSplit(examples, contexts, np.array(pair_ids, dtype=np.int64), [p for p, _ in files])
        self.datasets[split] = QaWindowDataset(windows, self.dictionary.pad(), split, self.cfg.seed, shuffle=is_train)

    def split_files(self, split: str) -> List[Tuple[LanguagePair, str]]:
        return split_files(self.cfg, self.pairs, split)

    # ----------------------------------------------------------------------- evaluation

    def valid_step(self, sample, model, criterion):
        model.eval()
        with torch.no_grad():
            logits = criterion.span_logits(model, sample)
            loss, sample_size, logging_output = criterion.span_loss(logits, sample)
        logging_output[SPANS_KEY] = self.decode_batch(sample, logits)
        return loss, sample_size, logging_output

    def decode_batch(self, sample, logits) -> List[Tuple[str, int, float, int, int]]:
        """(split, example, score, begin, end) of the best answer in each window of the batch.

        logits: `(batch, seq_len, 2)` start/end logits (criterion.span_logits).
        """
        split = sample["split"]
        dataset, qa_split = self.datasets[split], self.splits[split]
        logits = logits.detach().float().cpu().numpy()
        spans = []
        for row, index in enumerate(sample["id"].tolist()):
            window = dataset.windows[index]
            offsets = qa_split.contexts[window.example_index].offsets
            score, begin, end = window_answer(window, offsets, logits[row, :, 0], logits[row, :, 1],
                                              self.cfg.n_best, self.cfg.max_answer_length)
            spans.append((split, window.example_index, score, begin, end))
        return spans

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        spans = [span for log in logging_outputs for span in log.get(SPANS_KEY, ())]
        if not spans:
            return  # training batches
        metrics.log_custom(QaSpanMeter, SPANS_KEY, spans)
        split = spans[0][0]

        def stat(metric: str, pair: Optional[str] = None):
            """meters -> EM or F1 of one language pair, or the unweighted mean over pairs (the paper's Avg)."""
            def value(meters):
                scores = meters[SPANS_KEY].scores(self.score_split)
                chosen = [scores[pair]] if pair else list(scores.values())
                return round(float(np.mean([s[metric] for s in chosen])), 2)
            return value

        metrics.log_derived("f1", stat("f1"))
        metrics.log_derived("em", stat("exact_match"))
        for pair in self.splits[split].pairs:
            metrics.log_derived(f"f1_{pair.name}", stat("f1", pair.name))
            metrics.log_derived(f"em_{pair.name}", stat("exact_match", pair.name))

    def predictions(self, split: str, best: Dict[int, Tuple[float, int, int]]) -> Dict[str, Dict[str, str]]:
        """{pair name: {question id: answer text}} from the best (score, begin, end) per example."""
        qa_split = self.splits[split]
        out = {pair.name: {} for pair in qa_split.pairs}
        for index, (_, begin, end) in best.items():
            example = qa_split.examples[index]
            out[qa_split.pairs[qa_split.pair_ids[index]].name][example.id] = example.context[begin:end]
        return out

    def score_split(self, split: str, best: Dict[int, Tuple[float, int, int]]) -> Dict[str, Dict[str, float]]:
        """{pair name: {"exact_match", "f1", "count"}} in percent; questions without an answer score 0.

        Costs O(answers in `best`), not O(questions): fairseq re-derives the stats after every batch.
        """
        qa_split = self.splits[split]
        sums = np.zeros((len(qa_split.pairs), 2))  # (pairs, [exact match, f1])
        for index, (_, begin, end) in best.items():
            example = qa_split.examples[index]
            pair_index = qa_split.pair_ids[index]
            prediction, golds = example.context[begin:end], [a.text for a in example.answers]
            # The answer is in the context language: it decides the normalisation.
            lang = qa_split.pairs[pair_index].context
            sums[pair_index, 0] += max_over_gold(exact_match, prediction, golds, lang, self.cfg.qa_metric)
            sums[pair_index, 1] += max_over_gold(f1, prediction, golds, lang, self.cfg.qa_metric)
        counts = np.bincount(qa_split.pair_ids, minlength=len(qa_split.pairs))
        return {pair.name: {"exact_match": 100.0 * sums[i, 0] / max(counts[i], 1),
                            "f1": 100.0 * sums[i, 1] / max(counts[i], 1), "count": int(counts[i])}
                for i, pair in enumerate(qa_split.pairs)}


# --------------------------------------------------------------------------- checks


def language_pairs(cfg: XlmrSpanQaConfig) -> List[LanguagePair]:
    """(context, question) pairs to evaluate: same-language pairs, or the full G-XLT grid."""
    contexts = parse_list(cfg.eval_languages, "task.eval_languages")
    questions = parse_list(cfg.question_languages, "task.question_languages") if cfg.question_languages else []
    for lang in contexts:
        check_language(lang, cfg.qa_metric, field="task.eval_languages")
    if not questions:
        return [LanguagePair(lang, lang) for lang in contexts]
    return [LanguagePair(c, q) for c in contexts for q in questions]


def split_files(cfg: XlmrSpanQaConfig, pairs: List[LanguagePair], split: str) -> List[Tuple[LanguagePair, str]]:
    """(pair, path) of each evaluation file of `split`: test* splits read test files, others dev files."""
    pattern = cfg.test_file if split.startswith("test") else cfg.valid_file
    return [(pair, os.path.join(cfg.data, pattern.format(lang=pair.context, question=pair.question)))
            for pair in pairs]


def check_data_files(cfg: XlmrSpanQaConfig, pairs: List[LanguagePair]) -> None:
    """The training file (if set) and every dev file the valid subsets will read must exist."""
    if not os.path.isdir(cfg.data):
        raise ValueError(f"`task.data` directory {cfg.data!r} does not exist; give the directory holding the "
                         "SQuAD-format JSON files.")
    wanted = [cfg.train_file] if cfg.train_file else []
    if any(not split.startswith("test") for split in cfg.valid_subset.split(",") if split):
        wanted += [os.path.basename(path) for _, path in split_files(cfg, pairs, "valid")]
    missing = [name for name in wanted if not os.path.isfile(os.path.join(cfg.data, name))]
    if missing:
        raise ValueError(f"`task.data` {cfg.data!r} lacks {', '.join(missing)} (it has: "
                         f"{', '.join(sorted(os.listdir(cfg.data))) or 'nothing'}); fix --train-file, "
                         "--eval-languages/--question-languages or --valid-file.")
