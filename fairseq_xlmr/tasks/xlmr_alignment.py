"""Multi-objective cross-lingual pretraining: XLM-R's MLM on monolingual data plus XLM's TLM
(Conneau & Lample, 2019) and VECO 2.0's contrastive alignment (Zhang et al., 2023) on parallel data.
"""

import logging
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import torch
from fairseq import utils
from fairseq.data import data_utils
from fairseq.tasks import register_task
from omegaconf import II

from fairseq_xlmr.data.language_sampling import check_alpha, sampling_probs, size_ratios
from fairseq_xlmr.data.language_sampling_dataset import LanguageSamplingDataset
from fairseq_xlmr.data.parallel import BitextDataset, ParallelBatchDataset
from fairseq_xlmr.data.word_pairs import read_lexicon
from fairseq_xlmr.files import parse_list
from fairseq_xlmr.tasks.xlmr_mlm import XlmrMlmConfig, XlmrMlmTask, load_shared_dictionary

logger = logging.getLogger(__name__)


@dataclass
class XlmrAlignmentConfig(XlmrMlmConfig):
    para_data: str = field(default="", metadata={"help":
        "data-bin of parallel pairs written by `xlmr binarize --para-dir`: <pair>/train.<lang>.{bin,idx}; "
        "required when a criterion weight of tlm/seq/token is ever non-zero"})
    pairs: str = field(default="", metadata={"help":
        "comma-separated pairs src-tgt to train on (subdirectories of para_data); empty: every pair there"})
    pair_sampling_alpha: float = field(default=0.3, metadata={"help":
        "α of q_k ∝ p_k^α over pairs (p_k by number of sentence pairs), in (0, 1]; as for languages"})
    para_batch_size: int = field(default=32, metadata={"help":
        "parallel pairs per update and worker (the seq contrastive loss sees world_size × this many)"})
    max_side_tokens: int = field(default=0, metadata={"help":
        "each side of a pair is cut to this many tokens incl. <s> and </s>; 2 × it must be at most "
        "tokens_per_sample (the TLM input holds both sides); 0: tokens_per_sample / 2"})
    tlm_restart_positions: bool = field(default=False, metadata={"help":
        "TLM: start the positions of the second segment again at 0, as XLM did; off: one running "
        "sequence like XLM-R's pair encoding"})
    dictionary_dir: str = field(default="", metadata={"help":
        "directory of MUSE bilingual dictionaries <src>-<tgt>.txt (`src tgt` per line) for the token-level "
        "contrastive objective; pairs without a file get no token positives"})
    # Shared with the rest of the run: pair batches drawn per update, to find the pair stream's position on resume.
    update_freq: List[int] = II("optimization.update_freq")


@register_task("xlmr_alignment", dataclass=XlmrAlignmentConfig)
class XlmrAlignmentTask(XlmrMlmTask):
    """`xlmr_mlm` on monolingual data plus α-sampled parallel pairs for the `xlmr_alignment` criterion.

    Each training step gets the usual MLM batch from fairseq's iterator and, when the criterion has
    any parallel objective, one batch of pairs from this task's own iterator over `para_data`
    (sharded by worker); the criterion receives {"mlm", "para"} and reads the update number from the model.
    """

    cfg: XlmrAlignmentConfig

    def __init__(self, cfg: XlmrAlignmentConfig, dictionary, languages: List[str]):
        super().__init__(cfg, dictionary, languages)
        self.pairs: List[str] = []  # set by setup_task
        self.para_train: Optional[ParallelBatchDataset] = None
        self._para_epoch = 0
        self._para_batches = None
        self._first_step = True
        self.model_dim: Optional[int] = None

    @classmethod
    def setup_task(cls, cfg: XlmrAlignmentConfig, **kwargs):
        task = super().setup_task(cfg, **kwargs)
        check_alpha(cfg.pair_sampling_alpha)
        if cfg.para_batch_size < 1:
            raise ValueError(f"`task.para_batch_size` must be at least 1, got {cfg.para_batch_size}.")
        if cfg.max_side_tokens and not 4 <= cfg.max_side_tokens <= cfg.tokens_per_sample // 2:
            raise ValueError(f"`task.max_side_tokens` must be 0 or in [4, tokens_per_sample / 2 = "
                             f"{cfg.tokens_per_sample // 2}], got {cfg.max_side_tokens}: the TLM input holds both sides.")
        if cfg.para_data:
            task.pairs = resolve_pairs(cfg, task.languages)
            check_same_dictionary(cfg.para_data, task.dictionary)
        return task

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        # The criterion is built after the model; its projection head needs the model's width.
        self.model_dim = model.args.encoder_embed_dim
        return model

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        super().load_dataset(split, epoch, combine, **kwargs)
        if split == self.cfg.train_subset and self.pairs and self.para_train is None:
            self.para_train = self._load_parallel("train")

    def _load_parallel(self, split: str) -> ParallelBatchDataset:
        """Every pair's split, α-sampled over pairs, with TLM masking and the pair collater."""
        datasets, counts = [], []
        max_side = self.cfg.max_side_tokens or self.cfg.tokens_per_sample // 2
        for k, pair in enumerate(self.pairs):
            src_lang, tgt_lang = pair.split("-")
            prefix = os.path.join(self.cfg.para_data, pair, split)
            sides = [data_utils.load_indexed_dataset(f"{prefix}.{lang}", self.dictionary) for lang in (src_lang, tgt_lang)]
            if any(side is None for side in sides):
                raise ValueError(f"pair {pair!r} has no {split} data at {prefix}.{{{src_lang},{tgt_lang}}}.{{bin,idx}}; "
                                 f"binarise it with `xlmr binarize --para-dir` or leave it out of `task.pairs`.")
            lexicon = self._lexicon(pair)
            datasets.append(BitextDataset(sides[0], sides[1], self.dictionary, k, self.languages.index(src_lang),
                                          self.languages.index(tgt_lang), max_side, lexicon))
            counts.append(len(sides[0]))
        q = sampling_probs(counts, self.cfg.pair_sampling_alpha)
        for pair, n, q_k in zip(self.pairs, counts, q):
            logger.info("pair sampling: %-8s %8d pairs  p=%.4f  q=%.4f", pair, n, n / sum(counts), q_k)
        sampled = LanguageSamplingDataset(datasets, size_ratios(counts, q), self.cfg.seed, epoch=1,
                                          language_ids=list(range(len(self.pairs))))
        return ParallelBatchDataset(sampled, self.dictionary, self.mask_idx, self.cfg.seed, self.cfg.mask_prob,
                                    self.cfg.leave_unmasked_prob, self.cfg.random_token_prob,
                                    self.cfg.tlm_restart_positions)

    def _lexicon(self, pair: str) -> Optional[Dict]:
        if not self.cfg.dictionary_dir:
            return None
        path = os.path.join(self.cfg.dictionary_dir, pair + ".txt")
        if not os.path.isfile(path):
            logger.warning("no dictionary %s: pair %s gets no token-level positives", path, pair)
            return None
        lexicon = read_lexicon(path)
        logger.info("dictionary %s: %d source words", path, len(lexicon))
        return lexicon

    def next_parallel_batch(self, device: torch.device) -> Dict:
        """The next batch of pairs for this worker; a new α-sampled epoch of pairs when one runs out."""
        if self.para_train is None:
            raise ValueError("the criterion has a parallel objective (tlm/seq/token weight) but `task.para_data` is "
                             "empty; give the data-bin of `xlmr binarize --para-dir` or set those weights to 0.")
        while True:
            if self._para_batches is None or not self._para_batches.has_next():
                self._para_epoch += 1
                self._para_batches = self._pair_iterator(self._para_epoch).next_epoch_itr(shuffle=True)
            batch = next(self._para_batches)
            if batch:  # shards are padded with empty batches at the end of an epoch
                return utils.move_to_cuda(batch, device) if device.type == "cuda" else batch

    def _pair_iterator(self, epoch: int):
        """fairseq's epoch iterator over this worker's shard of the pair batches of pair epoch `epoch`."""
        world, rank = _world()
        return self.get_batch_iterator(
            self.para_train, max_sentences=self.cfg.para_batch_size, max_positions=self.cfg.tokens_per_sample,
            ignore_invalid_inputs=True, seed=self.cfg.seed, num_shards=world, shard_id=rank, epoch=epoch,
            num_workers=0)

    def resume_pair_stream(self, num_updates: int, needs_parallel: Callable[[int], bool]) -> int:
        """Move the pair stream to where a run stopped at `num_updates` left it; returns the batches skipped.

        fairseq's trainer restores its own data iterator on resume but never the task's state, so a
        resumed run would otherwise see the first pair epoch again. The position follows from the run:
        update_freq pair batches for every earlier update whose parallel weights were not all 0.
        Each pair epoch's iterator is rebuilt (as the interrupted run built it) only to count its batches.
        """
        per_update = set(self.cfg.update_freq)
        if len(per_update) != 1:
            raise ValueError(f"resuming task xlmr_alignment needs one `optimization.update_freq`, got "
                             f"{list(self.cfg.update_freq)}: the pair stream's position follows from it.")
        drawn = per_update.pop() * sum(1 for update in range(num_updates) if needs_parallel(update))
        skipped, epoch = drawn, 0
        world, rank = _world()
        while True:
            epoch += 1
            iterator = self._pair_iterator(epoch)
            real = len(range(rank, len(iterator.frozen_batches), world))  # the shard's non-empty batches
            if real == 0:
                raise ValueError("this worker's shard of the parallel data holds no batch; use fewer workers or "
                                 "a smaller `task.para_batch_size`.")
            if drawn < real:
                break
            drawn -= real
        # fairseq fast-forwards its iterator without collating the batches it skips.
        iterator.load_state_dict({"version": 2, "epoch": epoch, "iterations_in_epoch": drawn, "shuffle": True})
        self._para_epoch, self._para_batches = epoch, iterator.next_epoch_itr(shuffle=True)
        logger.info("resumed at update %d: the pair stream continues at pair epoch %d, batch %d (%d batches drawn "
                    "before)", num_updates, epoch, drawn, skipped)
        return skipped

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        inner = criterion
        while hasattr(inner, "module"):  # the criterion has parameters: fairseq wraps it for DDP
            inner = inner.module
        combined = {"mlm": sample}
        if self._first_step:  # a run that starts at update U > 0 resumes an earlier one
            self._first_step = False
            if update_num > 0 and self.para_train is not None:
                self.resume_pair_stream(update_num, inner.needs_parallel)
        if inner.needs_parallel(update_num):
            combined["para"] = self.next_parallel_batch(next(model.parameters()).device)
        return super().train_step(combined, model, criterion, optimizer, update_num, ignore_grad)


def _world():
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


def resolve_pairs(cfg: XlmrAlignmentConfig, languages: List[str]) -> List[str]:
    """`task.pairs`, or every `src-tgt` subdirectory of `task.para_data` with training data, checked."""
    if not os.path.isdir(cfg.para_data):
        raise ValueError(f"`task.para_data` {cfg.para_data!r} is not a directory; give the data-bin written by "
                         f"`xlmr binarize --para-dir`.")
    found = sorted(name for name in os.listdir(cfg.para_data)
                   if "-" in name and os.path.isdir(os.path.join(cfg.para_data, name)))
    pairs = parse_list(cfg.pairs, "task.pairs") if cfg.pairs.strip() else found
    if not pairs:
        raise ValueError(f"`task.para_data` {cfg.para_data!r} holds no <src>-<tgt> directory.")
    for pair in pairs:
        if pair not in found:
            raise ValueError(f"`task.pairs` lists {pair!r}, not a directory of {cfg.para_data} (found: "
                             f"{', '.join(found) or 'none'}).")
        missing = [lang for lang in pair.split("-") if lang not in languages]
        if missing:
            raise ValueError(f"pair {pair!r} has language(s) {', '.join(missing)} outside `task.languages` "
                             f"({', '.join(languages)}); language ids come from that list: add them or drop the pair.")
    return pairs


def check_same_dictionary(para_data: str, dictionary):
    """The parallel data must use the monolingual data's dict.txt (ids are shared by every objective)."""
    para_dict = load_shared_dictionary([para_data], [])
    mono = dictionary.symbols[: len(para_dict)]
    if para_dict.symbols != mono or len(dictionary) != len(para_dict) + 1:  # + <mask>, added by the task
        raise ValueError(f"`task.para_data` {para_data!r} was binarised with another dict.txt than `task.data` "
                         f"({len(para_dict)} vs {len(dictionary) - 1} symbols or different ids); binarise both with "
                         f"the same SentencePiece model and dict.txt.")
