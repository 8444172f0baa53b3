"""scripts/slurm/pretrain.sbatch on one machine: a fake srun starts the SLURM tasks, which train together
over gloo on CPU, checkpoint on the time-limit signal and requeue the job."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from tests.fixtures import fake_slurm
from tests.fixtures.fairseq_run import REPO, USER_DIR, run_cli
from tests.fixtures.tiny_bin import make_tiny_data_bin

SBATCH = os.path.join(REPO, "scripts", "slurm", "pretrain.sbatch")
# The debug config at test size; dropout off, so that how batches are split cannot change the result.
TINY = ["common.cpu=true", "dataset.batch_size=4", "task.tokens_per_sample=32", "model.max_positions=32",
        "common.log_interval=1", "dataset.disable_validation=true", "dataset.num_workers=0",
        "+model.dropout=0.0", "+model.attention_dropout=0.0"]
CPU_DISTRIBUTED = ["distributed_training.distributed_backend=gloo", "distributed_training.ddp_backend=legacy_ddp"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def start_sbatch(tmp_path, nodes, tasks_per_node, overrides, job_id=4242):
    """Run pretrain.sbatch would (the job's SLURM environment, fake srun/scontrol on PATH)."""
    data = tmp_path / "data-bin"
    if not data.exists():
        make_tiny_data_bin(data, ["en", "sw"], {"en": 200, "sw": 60})
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(fake_slurm.job_environment(job_id, nodes, tasks_per_node, submit_dir=REPO))
    env.update(PATH=f"{fake_slurm.install(tmp_path / 'bin')}:{os.path.dirname(sys.executable)}:{env['PATH']}",
               DATA=str(data), SAVE_ROOT=str(tmp_path / "runs"), CONFIG="debug", PORT=str(free_port()),
               FAKE_SLURM_LOG=str(tmp_path / "slurm.log"), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(["bash", SBATCH, *overrides], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    return proc, tmp_path / "runs" / f"test-{job_id}"


def train_stats(log):
    """The per-update JSON stats (train_inner) in a fairseq log: a file, or the text of one."""
    text = log.read_text() if isinstance(log, os.PathLike) else log
    return [json.loads(line[line.index("{"):]) for line in text.splitlines() if "[train_inner]" in line]


def test_two_nodes_train_together_like_one_process_with_update_freq_2(tmp_path):
    # fairseq shards each epoch's batches round-robin over the workers, and update_freq groups
    # consecutive batches: with the same seed, 2 workers × 1 batch and 1 worker × 2 batches see
    # the same 8 sequences in every update.
    proc, run_dir = start_sbatch(tmp_path, nodes=2, tasks_per_node=1,
                                 overrides=[*TINY, *CPU_DISTRIBUTED, "optimization.max_update=4"])
    output, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, output[-3000:]
    assert "2 node(s) × 1 task(s) = world size 2" in output

    from fairseq_cli.hydra_train import cli_main

    reference = tmp_path / "reference"
    run_cli(cli_main, [
        "--config-dir", f"{REPO}/hydra_configs/pretrain", "--config-name", "debug", f"common.user_dir={USER_DIR}",
        f"task.data={tmp_path / 'data-bin'}", *TINY, "optimization.max_update=4", "optimization.update_freq=[2]",
        f"checkpoint.save_dir={reference / 'checkpoints'}", f"hydra.run.dir={reference / 'hydra'}",
    ], "fairseq-hydra-train")

    together = train_stats(run_dir / "hydra" / "rank0" / "hydra_train.log")
    alone = train_stats(reference / "hydra" / "hydra_train.log")
    assert [s["num_updates"] for s in together] == ["1", "2", "3", "4"]
    assert [(s["loss"], s["bsz"]) for s in together] == [(s["loss"], s["bsz"]) for s in alone]
    assert {s["bsz"] for s in together} == {"8"}

    ours = torch.load(run_dir / "checkpoints" / "checkpoint_last.pt", weights_only=True)
    theirs = torch.load(reference / "checkpoints" / "checkpoint_last.pt", weights_only=True)
    assert ours["optimizer_history"][-1]["num_updates"] == theirs["optimizer_history"][-1]["num_updates"] == 4
    assert ours["model"].keys() == theirs["model"].keys()
    for name, value in ours["model"].items():
        torch.testing.assert_close(value, theirs["model"][name], rtol=1e-5, atol=1e-6, msg=name)
    assert ours["cfg"]["distributed_training"]["distributed_world_size"] == 2


def test_time_limit_signal_checkpoints_every_task_then_the_requeued_job_resumes(tmp_path):
    # 2 tasks on one node: task 1 has SLURM_LOCALID=1, which fairseq would select as CUDA device.
    proc, run_dir = start_sbatch(tmp_path, nodes=1, tasks_per_node=2, job_id=5151,
                                 overrides=[*TINY, *CPU_DISTRIBUTED, "optimization.max_update=100000"])
    log = run_dir / "hydra" / "rank0" / "hydra_train.log"
    deadline = time.monotonic() + 180
    while not (log.exists() and train_stats(log)):
        assert proc.poll() is None and time.monotonic() < deadline, "training never started"
        time.sleep(0.2)
    proc.send_signal(signal.SIGUSR1)  # what SLURM sends the batch shell 180 s before the time limit
    output, _ = proc.communicate(timeout=120)

    assert proc.returncode == 0 and "Traceback" not in output, output[-3000:]
    assert (tmp_path / "slurm.log").read_text() == "scontrol requeue 5151\n"
    stopped_at = int(train_stats(log)[-1]["num_updates"])
    assert 1 <= stopped_at < 100000
    assert f"preempted (SIGUSR1): saving a checkpoint at update {stopped_at} and stopping" in log.read_text()
    state = torch.load(run_dir / "checkpoints" / "checkpoint_last.pt", weights_only=True)
    assert state["optimizer_history"][-1]["num_updates"] == stopped_at

    # SLURM starts the requeued job: same id, same directory. Rank 0 loads checkpoint_last.pt and
    # broadcasts it to rank 1 (this crashed under PyTorch >= 2.6 before fairseq_xlmr.patches.broadcast).
    proc, _ = start_sbatch(tmp_path, nodes=1, tasks_per_node=2, job_id=5151,
                           overrides=[*TINY, *CPU_DISTRIBUTED, f"optimization.max_update={stopped_at + 2}"])
    output, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, output[-3000:]
    assert f"checkpoint_last.pt (epoch 1 @ {stopped_at} updates)" in output
    assert [int(s["num_updates"]) for s in train_stats(output)] == [stopped_at + 1, stopped_at + 2]


def test_fairseq_train_under_slurm_without_a_port_fails_before_training(tmp_path, monkeypatch):
    # A hand-written `srun fairseq-train ...` that forgot --distributed-port: fairseq itself would fall
    # back to single-node rendezvous; the plugin stops it before any data or model is loaded.
    from tests.fixtures.fairseq_run import fairseq_train

    for name, value in {**fake_slurm.job_environment(9, 2, 1, REPO), "SLURM_PROCID": "0"}.items():
        monkeypatch.setenv(name, value)
    make_tiny_data_bin(tmp_path / "data-bin", ["en"], {"en": 20})
    with pytest.raises(ValueError, match=r"`distributed_training.distributed_port` is -1 under SLURM"):
        fairseq_train([tmp_path / "data-bin", "--user-dir", USER_DIR, "--task", "xlmr_mlm", "--arch", "xlmr_debug",
                       "--criterion", "xlmr_mlm", "--optimizer", "xlmr_fused_adam", "--batch-size", "4", "--cpu",
                       "--distributed-world-size", "2", "--distributed-backend", "gloo", "--ddp-backend", "legacy_ddp",
                       "--save-dir", tmp_path / "checkpoints"])
    assert not (tmp_path / "checkpoints").exists()
