"""Training survives what clusters do to it: SIGKILL, preemption signals, a kill during a checkpoint write,
and a loss that turns NaN. Real fairseq-train runs; the killed ones in a subprocess (tests/fixtures/train_driver.py)."""

import os
import signal
import subprocess
import sys
import time
from unittest import mock

import pytest
import torch

from fairseq_xlmr import checkpoint
from fairseq_xlmr.patches.training_loop import DivergenceError
from tests.fixtures.fairseq_run import REPO, USER_DIR, fairseq_train, json_stats
from tests.fixtures.tiny_bin import make_tiny_data_bin

TRAINING = [
    "--user-dir", USER_DIR, "--task", "xlmr_mlm", "--criterion", "xlmr_mlm", "--arch", "xlmr_debug",
    "--max-positions", "32", "--tokens-per-sample", "32", "--cpu", "--num-workers", "0", "--seed", "1",
    "--optimizer", "xlmr_fused_adam", "--lr", "1e-3", "--lr-scheduler", "polynomial_decay", "--warmup-updates", "3",
    "--total-num-update", "50", "--batch-size", "4", "--required-batch-size-multiple", "1", "--log-interval", "1",
    "--disable-validation", "--no-epoch-checkpoints",
]


@pytest.fixture
def data_bin(tmp_path):
    make_tiny_data_bin(tmp_path / "data-bin", ["en", "sw"], {"en": 200, "sw": 60})
    return tmp_path / "data-bin"


def losses(messages):
    """{update: loss} of the per-update JSON stats (--log-interval 1), as logged."""
    return {int(s["num_updates"]): s["loss"] for s in json_stats(messages, '"num_updates"') if "loss" in s}


def messages(output: str):
    """The log messages of a fairseq-train process's output ("time | level | logger | message" lines)."""
    return [line.split(" | ", 3)[-1] for line in output.splitlines()]


def start_driver(tmp_path, args, fault=()):
    """fairseq-train in a subprocess; returns the process and the marker file its fault touches."""
    marker = tmp_path / "marker"
    command = [sys.executable, "-m", "tests.fixtures.train_driver", "--marker", str(marker), *fault, "--",
               *[str(a) for a in args], "--log-format", "json", "--no-progress-bar"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, marker


def wait_for(path, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"training ended before {path.name} appeared:\n{proc.stdout.read()[-3000:]}")
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


def num_updates(path):
    return checkpoint.load(path)["optimizer_history"][-1]["num_updates"]


def test_sigkill_and_resume_reproduce_the_straight_run(data_bin, tmp_path):
    straight = fairseq_train([data_bin, *TRAINING, "--max-update", "8", "--save-dir", tmp_path / "straight"])

    # Checkpoint at update 4, run update 5, then die by SIGKILL as update 6 begins: update 5 is lost.
    killed_dir = tmp_path / "killed"
    args = [data_bin, *TRAINING, "--max-update", "8", "--save-interval-updates", "4", "--save-dir", killed_dir]
    proc, marker = start_driver(tmp_path, args, fault=["--hang-before-update", "6"])
    wait_for(marker, proc)
    proc.send_signal(signal.SIGKILL)
    before_kill = losses(messages(proc.communicate(timeout=30)[0]))
    assert proc.returncode == -signal.SIGKILL
    assert num_updates(killed_dir / "checkpoint_last.pt") == 4

    resumed = fairseq_train(args)
    assert any("Loaded checkpoint" in m and "@ 4 updates" in m for m in resumed)
    expected = losses(straight)
    assert sorted(expected) == list(range(1, 9))
    assert before_kill == {u: expected[u] for u in range(1, 6)}
    assert losses(resumed) == {u: expected[u] for u in range(5, 9)}

    # Not only the logged losses: the parameters are bit-identical.
    ours = checkpoint.load(killed_dir / "checkpoint_last.pt")["model"]
    theirs = checkpoint.load(tmp_path / "straight" / "checkpoint_last.pt")["model"]
    assert all(torch.equal(ours[name], theirs[name]) for name in theirs)


def test_sigterm_saves_a_checkpoint_exits_cleanly_and_the_rerun_resumes_there(data_bin, tmp_path):
    # SIGTERM: SLURM's preemption. SIGUSR1 (the time-limit warning) goes through the same handler;
    # tests/e2e/test_slurm.py sends it the way SLURM does, to two tasks at once.
    run = [data_bin, *TRAINING, "--save-dir", tmp_path / "checkpoints"]
    proc, _ = start_driver(tmp_path, run + ["--max-update", "100000"])
    output = ""
    for line in proc.stdout:  # wait until training runs, then preempt it
        output += line
        if '"num_updates": "2"' in line:
            break
    proc.send_signal(signal.SIGTERM)
    output = messages(output + proc.communicate(timeout=120)[0])

    assert proc.returncode == 0, "\n".join(output[-40:])
    stopped_at = max(losses(output))
    assert 2 <= stopped_at < 100000
    assert any(f"preempted (SIGTERM): saving a checkpoint at update {stopped_at} and stopping" in m for m in output)
    assert num_updates(tmp_path / "checkpoints" / "checkpoint_last.pt") == stopped_at

    resumed = fairseq_train(run + ["--max-update", str(stopped_at + 2)])
    assert any("Loaded checkpoint" in m and f"@ {stopped_at} updates" in m for m in resumed)
    assert sorted(losses(resumed)) == [stopped_at + 1, stopped_at + 2]


def test_kill_during_checkpoint_write_leaves_the_previous_checkpoint_last(data_bin, tmp_path):
    # Saves at updates 2 and 4 write checkpoint_1_<u>.pt, then copy it to checkpoint_last.pt: the
    # process dies halfway through the second copy (stock fairseq copies in place: a truncated file).
    save_dir = tmp_path / "checkpoints"
    args = [data_bin, *TRAINING, "--max-update", "6", "--save-interval-updates", "2", "--save-dir", save_dir]
    proc, marker = start_driver(tmp_path, args, fault=["--hang-mid-write"])
    wait_for(marker, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)

    assert num_updates(save_dir / "checkpoint_1_4.pt") == 4  # the first file of the interrupted save
    half_written = save_dir / "checkpoint_last.pt.tmp"
    assert 0 < half_written.stat().st_size < (save_dir / "checkpoint_1_4.pt").stat().st_size
    assert num_updates(save_dir / "checkpoint_last.pt") == 2  # the previous save, complete

    resumed = fairseq_train(args)
    assert any("Loaded checkpoint" in m and "@ 2 updates" in m for m in resumed)
    assert num_updates(save_dir / "checkpoint_last.pt") == 6
    assert not half_written.exists()  # the next save of checkpoint_last.pt replaced the leftover


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(data_bin, tmp_path):
    from fairseq_xlmr.criterions.xlmr_mlm import XlmrMlmCriterion

    forward = XlmrMlmCriterion.forward
    calls = []

    def nan_from_update_3(self, model, sample, reduce=True):
        loss, sample_size, logging_output = forward(self, model, sample, reduce)
        calls.append(1)
        return (loss * float("nan") if len(calls) >= 3 else loss), sample_size, logging_output

    save_dir = tmp_path / "checkpoints"
    with mock.patch.object(XlmrMlmCriterion, "forward", nan_from_update_3):
        with pytest.raises(DivergenceError) as failure:
            fairseq_train([data_bin, *TRAINING, "--max-update", "6", "--save-interval-updates", "2",
                           "--save-dir", save_dir])

    message = str(failure.value)
    assert "training diverged at update 3 (gradients are Nan/Inf)" in message
    assert f"{save_dir / 'checkpoint_last.pt'}, written before the failure and left untouched" in message
    assert "lower optimization.lr (now 0.001)" in message and "warmup_updates (now 3)" in message
    assert isinstance(failure.value, FloatingPointError)  # callers catching fairseq's error still do
    assert num_updates(save_dir / "checkpoint_last.pt") == 2
    assert (save_dir / "crash.pt").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fairseq's fp16 optimizer needs CUDA")
def test_fp16_loss_scaling_skips_one_overflow_and_gives_up_on_a_persistent_nan(data_bin, tmp_path):
    from fairseq_xlmr.criterions.xlmr_mlm import XlmrMlmCriterion

    forward = XlmrMlmCriterion.forward
    calls = []

    def overflow_once_then_nan(self, model, sample, reduce=True):
        loss, sample_size, logging_output = forward(self, model, sample, reduce)
        calls.append(1)
        # update_freq 2: forward calls 3-4 make update 2 (skipped once), calls 11 on never recover
        bad = len(calls) == 3 or len(calls) >= 11
        return (loss * float("inf") if bad else loss), sample_size, logging_output

    save_dir = tmp_path / "checkpoints"
    gpu = [a for a in TRAINING if a != "--cpu"]
    with mock.patch.object(XlmrMlmCriterion, "forward", overflow_once_then_nan):
        with pytest.raises(DivergenceError, match="Minimum loss scale reached"):
            fairseq_train([data_bin, *gpu, "--fp16", "--fp16-init-scale", "8", "--min-loss-scale", "0.5",
                           "--update-freq", "2", "--max-update", "20", "--save-interval-updates", "2",
                           "--save-dir", save_dir])
    # The overflow at calls 3-4 skipped that batch; calls 5-10 made updates 2-4 (saved at 2 and 4).
    assert num_updates(save_dir / "checkpoint_last.pt") == 4
