"""Launch checks of fairseq_xlmr.patches.distributed_launch: what fairseq would get silently wrong under SLURM fails first,
with the field, the value, the rule and the fix; the CPU rendezvous is one process per task."""

import os

import pytest
from fairseq.dataclass.configs import FairseqConfig
from omegaconf import OmegaConf

from fairseq_xlmr.patches.distributed_launch import check_launch, infer_task_init, needs_task_init, slurm_layout
from tests.fixtures import fake_slurm


def config(world=2, port=12345, cpu=True, backend="gloo", ddp="legacy_ddp"):
    cfg = OmegaConf.structured(FairseqConfig)
    cfg.common.cpu = cpu
    dt = cfg.distributed_training
    dt.distributed_world_size, dt.distributed_port = world, port
    dt.distributed_backend, dt.ddp_backend = backend, ddp
    return cfg


def slurm(nodes, tasks_per_node, procid=0, in_srun=True):
    env = fake_slurm.job_environment(77, nodes, tasks_per_node, submit_dir="/repo")
    env["SLURM_PROCID"] = str(procid)
    if in_srun:
        env["SLURM_STEP_NUM_TASKS"] = str(nodes * tasks_per_node)
    return env


def test_slurm_layout_reads_what_fairseq_reads():
    assert slurm_layout({}) is None
    layout = slurm_layout({**slurm(2, 4, procid=5), "SLURM_NTASKS_PER_NODE": "4(x2)"})
    assert (layout.nodes, layout.tasks_per_node, layout.procid, layout.step_tasks) == (2, 4, 5, 8)
    env = slurm(2, 4)
    del env["SLURM_NTASKS_PER_NODE"]  # --ntasks=8 without --ntasks-per-node
    assert slurm_layout(env).tasks_per_node == 4


def test_one_process_per_task_under_slurm_is_accepted():
    check_launch(config(world=2), slurm(2, 1))
    check_launch(config(world=8), slurm(1, 8))
    check_launch(config(world=1), slurm(1, 1))  # an ordinary single-task job
    check_launch(config(world=1), {})  # no SLURM at all


def test_world_size_one_under_a_multi_task_srun_fails():
    with pytest.raises(ValueError, match=r"`distributed_training.distributed_world_size` is 1, but srun started 8 "
                                         r"tasks.*2 × 4 = 8.*distributed_world_size=8"):
        check_launch(config(world=1), slurm(2, 4))


def test_world_size_one_under_torchrun_fails():
    torchrun = {"MASTER_ADDR": "h", "MASTER_PORT": "1", "WORLD_SIZE": "4", "RANK": "0"}
    with pytest.raises(ValueError, match="is 1, but torchrun started 4 processes.*distributed_world_size=4"):
        check_launch(config(world=1), torchrun)
    check_launch(config(world=4), torchrun)


def test_world_size_that_is_not_nodes_times_tasks_fails():
    with pytest.raises(ValueError, match=r"is 16, but this SLURM job runs 2 node\(s\) × 4 task\(s\) per node = 8 "
                                         r"tasks.*Fix: pass distributed_training.distributed_world_size=8"):
        check_launch(config(world=16), slurm(2, 4))


def test_missing_port_under_slurm_fails():
    with pytest.raises(ValueError, match=r"`distributed_training.distributed_port` is -1 under SLURM.*silently falls "
                                         r"back to single-node.*distributed_port="):
        check_launch(config(world=2, port=-1), slurm(2, 1))


def test_cpu_runs_need_a_launcher_gloo_and_legacy_ddp():
    with pytest.raises(ValueError, match="needs a launcher.*srun.*torchrun"):
        check_launch(config(world=2), {})
    with pytest.raises(ValueError, match="`distributed_training.distributed_backend` is 'nccl' on CPU.*gloo"):
        check_launch(config(world=2, backend="nccl"), slurm(2, 1))
    with pytest.raises(ValueError, match="`distributed_training.ddp_backend` is 'pytorch_ddp' on CPU.*legacy_ddp"):
        check_launch(config(world=2, ddp="pytorch_ddp"), slurm(2, 1))


def test_cpu_rendezvous_is_one_process_per_task_on_no_device(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{fake_slurm.install(tmp_path)}:{os.environ['PATH']}")
    cfg = config(world=2)
    assert needs_task_init(cfg, slurm(1, 2, procid=1))
    env = {**slurm(1, 2, procid=1), "SLURM_LOCALID": "1"}  # fairseq would select CUDA device 1
    infer_task_init(cfg.distributed_training, env)
    dt = cfg.distributed_training
    assert (dt.distributed_init_method, dt.distributed_rank) == ("tcp://localhost:12345", 1)
    assert (dt.device_id, dt.distributed_no_spawn) == (0, True)

    dt = config(world=2).distributed_training
    infer_task_init(dt, {"MASTER_ADDR": "h", "MASTER_PORT": "1", "WORLD_SIZE": "2", "RANK": "1"})
    assert (dt.distributed_init_method, dt.distributed_rank, dt.device_id) == ("env://", 1, 0)
    assert not needs_task_init(config(world=1), slurm(1, 2))
