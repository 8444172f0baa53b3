"""The labelled fine-tuning tasks (XTREME's XNLI, PAWS-X, POS, NER; Hu et al., 2020): per-language raw files of
labelled examples, the label set kept in the checkpoint, zero-shot transfer from `train_languages` to
`eval_languages`. `xlmr_sentence_classification` and `xlmr_token_classification` subclass it.
"""

import dataclasses
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from fairseq_xlmr.files import parse_list
from fairseq_xlmr.finetune import split_files
from fairseq_xlmr.finetune.base import XlmrFinetuneConfig, XlmrFinetuneTask

logger = logging.getLogger(__name__)

SPLIT_FIELDS = {"train": "train_file", "valid": "valid_file", "test": "test_file"}
# A training label seen fewer than MIN_LABEL_COUNT times, and at most RARE_LABEL_SHARE times as often as the most
# frequent label, is refused as a likely typo unless `--labels` lists it (in a tiny set every label is rare).
MIN_LABEL_COUNT = 3
RARE_LABEL_SHARE = 0.02


@dataclass
class XlmrClassificationConfig(XlmrFinetuneConfig):
    train_languages: str = field(default="en", metadata={"help":
        "comma-separated languages to fine-tune on: 'en' is the paper's cross-lingual transfer (zero-shot "
        "to the others), 'all' every language with a training file (translate-train-all)"})
    labels: str = field(default="", metadata={"help":
        "comma-separated labels the training data may use; empty: any label, except one seen fewer than "
        f"{MIN_LABEL_COUNT} times and at most {RARE_LABEL_SHARE:.0%} as often as the most frequent label (refused as a "
        "likely typo, which would otherwise become a class of its own)"})


class XlmrClassificationTask(XlmrFinetuneTask):
    """Base of the labelled fine-tuning tasks. Subclasses define `metric_name`, `read_file`, `example_labels`,
    `build_dataset` and `add_head`.

    Languages: `train_languages`, `eval_languages` and `languages` (their union, eval first);
    batches carry `language`, positions in `languages`. The label set (`labels`, sorted labels of
    the training data) and the train languages live in the task state, so they are saved in every
    checkpoint and an evaluation maps ids to labels as training did, without the training files.
    """

    cfg: XlmrClassificationConfig

    def __init__(self, cfg: XlmrClassificationConfig, dictionary, sp):
        super().__init__(cfg, dictionary, sp)
        self.eval_languages: List[str] = []
        self._examples: Dict[str, list] = {}  # split -> examples read at setup, until load_dataset
        self._files: Dict[str, list] = {}  # path -> examples, while setup reads a file more than once
        self.state.add_factory("labels", self._labels_from_training_data)
        # Named languages, or none for 'all' when the training files are not read (evaluation).
        self.state.add_factory("train_languages", lambda: split_files.parse_languages(
            cfg.train_languages, "train_languages") or [])

    @classmethod
    def setup_task(cls, cfg: XlmrClassificationConfig, from_checkpoint=False, **kwargs):
        cls.check_config(cfg)
        task = cls(cfg, *cls.load_vocabulary(cfg))
        task.eval_languages = task._resolve_languages(cfg.eval_languages, "eval_languages", "valid")
        # Evaluation (from_checkpoint): labels and train languages come from the checkpoint's task
        # state, and the training files may be gone. Training: read every split now, so that bad
        # data fails before the first update.
        if not from_checkpoint:
            train_languages = task._resolve_languages(cfg.train_languages, "train_languages", "train")
            task.state.merge_state_dict({"train_languages": train_languages})
            for split in ("train", "valid", "test"):
                if split == "train" or getattr(cfg, SPLIT_FIELDS[split]):
                    task._examples[split] = task._read_split(split)
            task._check_training_labels(task._examples["train"])
            for split in ("valid", "test"):
                task._check_labels(split, task._examples.get(split, []))
            task._examples.pop("test", None)  # checked; fairseq-train never loads it (finetune-eval does)
            logger.info("train languages: %s; labels (%d): %s", ",".join(train_languages), len(task.labels),
                        " ".join(task.labels))
        task._files.clear()
        logger.info("eval languages: %s", ",".join(task.eval_languages))
        return task

    @classmethod
    def check_config(cls, cfg: XlmrClassificationConfig):
        if cfg.max_length < 8:
            raise ValueError(f"`task.max_length` must be >= 8, got {cfg.max_length}; XTREME used 128.")
        super().check_config(cfg)

    # ------------------------------------------------------------------ languages, files, labels

    @property
    def languages(self) -> List[str]:
        return list(dict.fromkeys(self.eval_languages + self.train_languages))

    @property
    def labels(self) -> List[str]:
        return self.state.labels

    @property
    def train_languages(self) -> List[str]:
        return self.state.train_languages

    @property
    def train_size(self) -> int:
        """Number of training examples (sentences or pairs), read from the files if not loaded yet."""
        if "train" in self.datasets:
            return len(self.datasets["train"])
        return len(self._examples.get("train") or self._read_split("train"))

    def _check_training_labels(self, examples: list) -> None:
        """Log the label counts of the training data; refuse labels outside `--labels`, or, without it, labels
        rarer than MIN_LABEL_COUNT and RARE_LABEL_SHARE of the most frequent (a typo such as 'entailmnet' would
        become a class of its own)."""
        counts = Counter(label for example in examples for label in self.example_labels(example))
        logger.info("training labels: %s", ", ".join(f"{label} {n}" for label, n in counts.most_common()))
        allowed = parse_list(self.cfg.labels, "task.labels") if self.cfg.labels else None
        if allowed is not None:
            unknown = sorted(label for label in counts if label not in allowed)
            if unknown:
                raise ValueError(f"training labels {unknown} are not among `task.labels` {allowed}; fix them in the "
                                 f"training files under {self.cfg.data!r} or add them to --labels.")
            return
        most = max(counts.values(), default=0)
        rare = {label: n for label, n in counts.items() if n < MIN_LABEL_COUNT and n <= RARE_LABEL_SHARE * most}
        if rare:
            shown = ", ".join(f"{label!r} ({n}x)" for label, n in sorted(rare.items()))
            raise ValueError(f"training labels {shown} occur fewer than {MIN_LABEL_COUNT} times, against {most} for the "
                             "most frequent: a typo makes a class "
                             f"of its own. Fix them in the training files under {self.cfg.data!r}, or list every label "
                             f"with --labels {','.join(sorted(counts))} to keep them.")

    def _labels_from_training_data(self) -> List[str]:
        examples = self._examples.get("train") or self._read_split("train")
        return sorted({label for example in examples for label in self.example_labels(example)})

    def _split_languages(self, split: str) -> List[str]:
        return self.train_languages if split == "train" else self.eval_languages

    def _pattern(self, split: str) -> str:
        if split not in SPLIT_FIELDS:
            raise ValueError(f"unknown split {split!r}; this task reads {', '.join(SPLIT_FIELDS)} (set "
                             "--train-subset/--valid-subset to those names).")
        return getattr(self.cfg, SPLIT_FIELDS[split])

    def _resolve_languages(self, value: str, field_name: str, split: str) -> List[str]:
        languages = split_files.parse_languages(value, field_name)
        pattern, data = self._pattern(split), self.cfg.data
        if split_files.is_per_language(pattern, SPLIT_FIELDS[split]):
            available = split_files.discover_languages(data, pattern)
        else:
            available = sorted({example.language for example in self._read_file_checked(split, None)})
        if not available:
            raise ValueError(f"`task.{SPLIT_FIELDS[split]}` {pattern!r} matches no file under {data!r}; fix the "
                             "pattern or --data.")
        if languages is None:
            return available
        unknown = [lang for lang in languages if lang not in available]
        if unknown:
            raise ValueError(f"`task.{field_name}` names {unknown}, but {split} data under {data!r} "
                             f"({pattern!r}) has only {available}; fix the language codes or add the files.")
        return languages

    def _read_file_checked(self, split: str, lang: Optional[str]) -> list:
        pattern = self._pattern(split)
        if lang is None:
            path = os.path.join(self.cfg.data, pattern)
        else:
            path = split_files.language_file(self.cfg.data, pattern, lang)
        if path is None or not os.path.isfile(path):
            shown = pattern.replace(split_files.LANG, lang or split_files.LANG)
            raise ValueError(f"{split} file missing: `task.{SPLIT_FIELDS[split]}` {shown!r} does not exist under "
                             f"{self.cfg.data!r}; add the file, fix the pattern, or drop the language.")
        if str(path) not in self._files:
            self._files[str(path)] = self.read_file(str(path), lang)
        return self._files[str(path)]

    def _read_split(self, split: str) -> list:
        """Examples of `split` for its languages, each example's `language` set."""
        languages = self._split_languages(split)
        if split_files.is_per_language(self._pattern(split), SPLIT_FIELDS[split]):
            # A per-language file belongs to its language, whatever a row says.
            examples = [dataclasses.replace(example, language=lang)
                        for lang in languages for example in self._read_file_checked(split, lang)]
        else:
            wanted = set(languages)
            examples = [example for example in self._read_file_checked(split, None) if example.language in wanted]
        counts = Counter(example.language for example in examples)
        empty = [lang for lang in languages if not counts[lang]]
        if empty:
            raise ValueError(f"{split} data has no example for {empty}; fix `task.{SPLIT_FIELDS[split]}` or "
                             "drop the language.")
        logger.info("%s: %d examples (%s)", split, len(examples),
                    ", ".join(f"{lang} {counts[lang]}" for lang in languages))
        return examples

    def _check_labels(self, split: str, examples: list):
        known = set(self.labels)
        for example in examples:
            for label in self.example_labels(example):
                if label not in known:
                    raise ValueError(f"label {label!r} in {split} ({example.language}) does not occur in the "
                                     f"training data, whose labels are {sorted(known)}: the classifier has no "
                                     "output for it. Fix the label spelling or add training examples with it.")

    # ------------------------------------------------------------------ fairseq API

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        examples = self._examples.pop(split, None)
        if examples is None:
            examples = self._read_split(split)
            if split != "train":
                self._check_labels(split, examples)
            self._files.clear()
        self.datasets[split] = self.build_dataset(split, examples)
        return self.datasets[split]

    # ------------------------------------------------------------------ subclass hooks

    def read_file(self, path: str, language: Optional[str]) -> list:
        raise NotImplementedError

    def example_labels(self, example) -> List[str]:
        raise NotImplementedError

    def build_dataset(self, split: str, examples: list):
        raise NotImplementedError
