"""Replaces `train` and `validate_and_save` of `fairseq_cli.train` (checked on ve-fairseq 0.12.3): training stops
cleanly on preemption and names the fix when it diverges.

fairseq lacks both:

- Preemption. SLURM sends SIGTERM (preemption) or the signal asked for with `--signal` (SIGUSR1 in
  scripts/slurm/*.sbatch) before it kills a job; fairseq dies and loses the updates since its last
  checkpoint. We catch both signals; at the next update boundary every rank agrees (one
  all-reduce per update) to save a checkpoint and stop with exit status 0, and the same command
  then resumes from checkpoint_last.pt at that update.
- A clear divergence message. On NaN/Inf gradients fairseq writes crash.pt, re-runs the batch under
  its NanDetector and raises `FloatingPointError: gradients are Nan/Inf` ("Minimum loss scale
  reached" with fp16); we re-raise it naming the update, the last good checkpoint and the settings
  to change (the NanDetector itself: patches/nan_detector.py).

`validate_and_save` runs after every update (the stop check), `train` once per epoch (signal handlers,
divergence message, the global batch logged once); fairseq_cli.train looks both up at call time.
"""

import logging
import math
import os
import signal
import sys
import threading
import weakref

import torch
from fairseq import checkpoint_utils
from fairseq.distributed import utils as distributed_utils
from omegaconf import OmegaConf

from fairseq_xlmr.patches.wrapping import replace

logger = logging.getLogger(__name__)

PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class DivergenceError(FloatingPointError):
    """Training produced NaN/Inf gradients, or fp16 loss scaling gave up."""


class _PreemptionSignals:
    """While training runs, SIGTERM and SIGUSR1 only set a flag.

    Repeated signals change nothing: SLURM may deliver one twice (to a task directly and through
    srun), and a second one must not cut the checkpoint short. SIGKILL (SLURM's KillWait) and
    SIGINT keep their meaning.
    """

    def __init__(self):
        self.received = None  # number of the first signal
        self._previous = {}

    def install(self):
        # signal.signal works in the main thread only; elsewhere fairseq keeps the default behaviour.
        if self._previous or threading.current_thread() is not threading.main_thread():
            return
        self.received = None
        for signum in PREEMPTION_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def uninstall(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum, frame):
        if self.received is None:
            self.received = signum  # acted upon at the next update boundary; no logging in a handler


_signals = _PreemptionSignals()


def stop_requested(trainer) -> bool:
    """True on every rank if any rank received a preemption signal."""
    requested = _signals.received is not None
    if trainer.data_parallel_world_size > 1:
        # Ranks see the signal at different updates; agreeing at every update keeps them in step.
        flag = torch.tensor([float(requested)], device=trainer.device)
        distributed_utils.all_reduce(flag, group=trainer.data_parallel_process_group)
        requested = flag.item() > 0
    return requested


def _stop_on_preemption(validate_and_save):
    def wrapper(cfg, trainer, task, epoch_itr, valid_subsets, end_of_epoch):
        if not stop_requested(trainer):
            return validate_and_save(cfg, trainer, task, epoch_itr, valid_subsets, end_of_epoch)
        updates = trainer.get_num_updates()
        cause = signal.Signals(_signals.received).name if _signals.received else "a signal on another rank"
        logger.warning("preempted (%s): saving a checkpoint at update %d and stopping; the same command "
                       "resumes from it", cause, updates)
        # No validation: the time before SLURM's SIGKILL goes to the checkpoint.
        path = checkpoint_utils.save_checkpoint(cfg.checkpoint, trainer, epoch_itr, None)
        if path is not None and hasattr(task, "post_save"):
            task.post_save(path, updates)
        return [None], True

    return wrapper


def _guard_epoch(train):
    logged = weakref.WeakSet()  # trainers whose global batch was logged (once per run, not per epoch)

    def wrapper(cfg, trainer, task, epoch_itr):
        _signals.install()
        if trainer not in logged:
            logger.info("global batch: %s", describe_global_batch(cfg, trainer.data_parallel_world_size))
            logged.add(trainer)
        finished = True
        try:
            valid_losses, should_stop = train(cfg, trainer, task, epoch_itr)
            finished = should_stop or epoch_itr.next_epoch_idx > (cfg.optimization.max_epoch or math.inf)
            return valid_losses, should_stop
        except FloatingPointError as err:
            raise DivergenceError(divergence_message(cfg, trainer.get_num_updates() + 1, err)) from err
        finally:
            if finished:  # restore the previous handlers once training is over (in-process runs)
                _signals.uninstall()

    return wrapper


def describe_global_batch(cfg, world_size: int) -> str:
    """'32 worker(s) × 32 sequences × update_freq 8 = 8192 sequences per update' (or the token bound)."""
    update_freq = cfg.optimization.update_freq[0]
    if cfg.dataset.batch_size:
        per_worker, unit = cfg.dataset.batch_size, "sequences"
    else:
        per_worker, unit = cfg.dataset.max_tokens, "tokens at most"
    return (f"{world_size} worker(s) × {per_worker} {unit} × update_freq {update_freq} = "
            f"{world_size * per_worker * update_freq} {unit} per update")


def divergence_message(cfg, update: int, err: BaseException) -> str:
    ck = cfg.checkpoint
    last = os.path.join(ck.save_dir, f"checkpoint_last{ck.checkpoint_suffix}.pt")
    if os.path.exists(last) and not ck.no_save:
        saved = f"{last}, written before the failure and left untouched, is the last good checkpoint"
    else:
        saved = "no checkpoint had been written yet"
    lr = cfg.optimization.lr[0]
    warmup = OmegaConf.select(cfg, "lr_scheduler.warmup_updates", default="none")
    return (f"training diverged at update {update} ({err}); {saved}; crash.pt in {ck.save_dir} holds the "
            f"failing state, for inspection only. Fix: lower optimization.lr (now {lr}), lengthen "
            f"lr_scheduler.warmup_updates (now {warmup}), keep optimization.clip_norm > 0 (now "
            f"{cfg.optimization.clip_norm}), and prefer model.bf16_autocast to common.fp16 on GPUs with bf16; "
            "then rerun the same command, which resumes from checkpoint_last.pt.")


def patch_module(module) -> None:
    """Wrap `train` and `validate_and_save` of fairseq_cli.train (or of `__main__` run as that file)."""
    if module is None or not hasattr(module, "validate_and_save") or not hasattr(module, "train"):
        return
    replace(module, "validate_and_save", _stop_on_preemption)
    replace(module, "train", _guard_epoch)


def apply() -> None:
    # fairseq-train and fairseq-hydra-train import fairseq_cli.train before the plugin; in-process callers
    # that import us first are patched by our `call_main` (patches/distributed_launch.py).
    patch_module(sys.modules.get("fairseq_cli.train"))
