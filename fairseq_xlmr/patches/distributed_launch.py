"""Replaces `fairseq.distributed.utils.call_main` (checked on ve-fairseq 0.12.3): launch checks and one process per
task for fairseq's distributed training (SLURM, torchrun, CPU).

fairseq infers ranks and the rendezvous address in `distributed_utils.call_main`, before any
training starts. Two things go wrong there, and we wrap exactly that function:

1. Silent mistakes under SLURM. Without `distributed_training.distributed_port` fairseq falls back
   to single-node rendezvous (every node trains alone, or it hangs); with one task per GPU and the
   default `distributed_world_size` (the GPUs one task sees: 1 with `--gpus-per-task=1`) every task
   trains its own copy into the same save_dir. `check_launch` turns these into errors naming the
   field, the value, the rule and the fix.
2. Processes without "their" GPU. fairseq calls `torch.cuda.set_device(SLURM_LOCALID)` for every
   local rank above 0, even with `common.cpu`, and a task started with `--gpus-per-task=1` sees only
   GPU 0; it sizes torchrun and one-task-per-node SLURM jobs by `torch.cuda.device_count()` (on CPU
   0: a ZeroDivisionError, or a world of 0); its `c10d` DDP passes `device_ids`, which PyTorch
   refuses for CPU modules. In those cases (`needs_task_init`) we set the rendezvous up ourselves,
   one process per SLURM (or torchrun) task, on device 0 or the CPU, and ask CPU runs for `gloo` and
   `legacy_ddp` with a clear error.

`fairseq-train` imports the plugin (`--user-dir`) while parsing arguments, before `call_main`.
`fairseq-hydra-train` imports `common.user_dir` only inside training, after `call_main` has run;
`hydra_configs/run_config/*.yaml` therefore name `fairseq_xlmr.components.PluginCallback` as a Hydra
callback, whose instantiation imports the plugin first.
"""

import dataclasses
import logging
import os
import re
import subprocess
import sys
from typing import Optional

import torch
from fairseq.distributed import utils as distributed_utils

from fairseq_xlmr.patches import fully_sharded, training_loop
from fairseq_xlmr.patches.wrapping import replace

logger = logging.getLogger(__name__)

TORCHRUN_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK")


@dataclasses.dataclass
class SlurmLayout:
    """What fairseq reads from a SLURM task's environment."""

    nodelist: str
    nodes: int  # SLURM_NNODES
    tasks_per_node: int  # SLURM_NTASKS_PER_NODE, else SLURM_NTASKS / SLURM_NNODES (fairseq's rule)
    procid: int  # SLURM_PROCID: this task's global rank
    step_tasks: Optional[int]  # SLURM_STEP_NUM_TASKS: tasks srun started (None outside srun)


def slurm_layout(environ=os.environ) -> Optional[SlurmLayout]:
    """The SLURM job as fairseq's `_infer_slurm_init` sees it, or None outside SLURM."""
    nodelist = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST")
    if nodelist is None or "SLURM_NNODES" not in environ:
        return None
    nodes = int(environ["SLURM_NNODES"])
    if environ.get("SLURM_NTASKS_PER_NODE"):
        # "8", or "8(x2)" in some SLURM versions: the leading number is the count per node.
        tasks_per_node = int(re.match(r"\d+", environ["SLURM_NTASKS_PER_NODE"]).group())
    else:
        tasks_per_node = int(environ.get("SLURM_NTASKS", nodes)) // nodes
    step_tasks = environ.get("SLURM_STEP_NUM_TASKS")
    return SlurmLayout(nodelist, nodes, tasks_per_node, int(environ.get("SLURM_PROCID", 0)),
                       int(step_tasks) if step_tasks else None)


def on_cpu(cfg) -> bool:
    return cfg.common.cpu or not torch.cuda.is_available()


def check_launch(cfg, environ=os.environ) -> None:
    """Raise ValueError for a distributed setup fairseq would get silently wrong; see the module doc."""
    dt = cfg.distributed_training
    if dt.distributed_init_method is not None or cfg.common.tpu:
        return  # the user set the rendezvous up explicitly
    world = dt.distributed_world_size
    torchrun = all(name in environ for name in TORCHRUN_VARIABLES)
    slurm = None if torchrun else slurm_layout(environ)
    cpu = on_cpu(cfg)

    if torchrun and world == 1 and int(environ["WORLD_SIZE"]) > 1:
        raise ValueError(
            f"`distributed_training.distributed_world_size` is 1, but torchrun started {environ['WORLD_SIZE']} "
            "processes (WORLD_SIZE): fairseq ignores the launcher at world size 1 and each process would train "
            f"alone. Fix: pass distributed_training.distributed_world_size={environ['WORLD_SIZE']} "
            f"(--distributed-world-size {environ['WORLD_SIZE']}).")
    if slurm is not None:
        tasks = slurm.nodes * slurm.tasks_per_node
        if world == 1 and (slurm.step_tasks or 1) > 1:
            raise ValueError(
                f"`distributed_training.distributed_world_size` is 1, but srun started {slurm.step_tasks} tasks "
                f"(SLURM_STEP_NUM_TASKS): each task would train its own copy of the model into the same "
                f"save_dir. Rule: with one task per GPU, distributed_world_size = nodes × tasks per node "
                f"({slurm.nodes} × {slurm.tasks_per_node} = {tasks}). Fix: pass "
                f"distributed_training.distributed_world_size={tasks} (--distributed-world-size {tasks}), "
                "as scripts/slurm/*.sbatch do.")
        if world > 1:
            # With one task per node on GPUs fairseq starts one process per visible GPU itself and
            # sets the world size from the GPU count: nothing to check there.
            if (slurm.tasks_per_node > 1 or cpu) and world != tasks:
                raise ValueError(
                    f"`distributed_training.distributed_world_size` is {world}, but this SLURM job runs "
                    f"{slurm.nodes} node(s) × {slurm.tasks_per_node} task(s) per node = {tasks} tasks. Rule: "
                    "with one task per GPU, distributed_world_size = nodes × tasks per node. Fix: pass "
                    f"distributed_training.distributed_world_size={tasks}, or submit with "
                    "--nodes/--ntasks-per-node that multiply to the world size you want (and adapt "
                    "optimization.update_freq so that the global batch stays what the config states).")
            if dt.distributed_port <= 0 and (slurm.nodes > 1 or slurm.tasks_per_node > 1 or cpu):
                raise ValueError(
                    f"`distributed_training.distributed_port` is {dt.distributed_port} under SLURM "
                    f"({slurm.nodes} node(s) × {slurm.tasks_per_node} task(s)): without a port fairseq silently "
                    "falls back to single-node rendezvous, so the nodes never train together. Rule: multi-task "
                    "SLURM training needs a port > 0, the same for every task and free on the first node. Fix: "
                    "pass distributed_training.distributed_port=$((10000 + SLURM_JOB_ID % 50000)) "
                    "(--distributed-port), as scripts/slurm/*.sbatch do.")

    if cpu and world > 1:
        if not torchrun and slurm is None:
            raise ValueError(
                f"`distributed_training.distributed_world_size` is {world} with `common.cpu` (or no GPU), but "
                "fairseq's own launcher starts one process per GPU. Rule: multi-process CPU training needs a "
                "launcher that starts the processes. Fix: run under srun (one task per process) or torchrun "
                f"--nproc-per-node {world}, or train with distributed_world_size=1.")
        if dt.distributed_backend != "gloo":
            raise ValueError(
                f"`distributed_training.distributed_backend` is '{dt.distributed_backend}' on CPU. Rule: "
                "NCCL needs GPUs; CPU processes communicate through gloo. Fix: pass "
                "distributed_training.distributed_backend=gloo (--distributed-backend gloo).")
        if dt.ddp_backend in ("c10d", "pytorch_ddp"):
            raise ValueError(
                f"`distributed_training.ddp_backend` is '{dt.ddp_backend}' on CPU: fairseq passes "
                "device_ids to PyTorch's DistributedDataParallel, which refuses them for CPU modules. Fix: "
                "pass distributed_training.ddp_backend=legacy_ddp (--ddp-backend legacy_ddp).")


def needs_task_init(cfg, environ=os.environ) -> bool:
    """True where fairseq's own rank inference would pick a CUDA device that is not there."""
    dt = cfg.distributed_training
    if dt.distributed_init_method is not None or cfg.common.tpu or dt.distributed_world_size <= 1:
        return False
    if on_cpu(cfg):
        return True
    if all(name in environ for name in TORCHRUN_VARIABLES):
        return False
    slurm = slurm_layout(environ)
    return slurm is not None and slurm.tasks_per_node > 1 and torch.cuda.device_count() == 1


def infer_task_init(dt, environ=os.environ) -> None:
    """Fill the rendezvous of one process per SLURM or torchrun task, on the CPU or the task's only GPU.

    This is fairseq's own path for one task per GPU, except the device: every process is its own
    launcher task (`distributed_no_spawn`), its rank is the task's global rank, and `device_id` is 0
    (the CPU has none to select; a task bound to one GPU sees it as device 0).
    """
    if all(name in environ for name in TORCHRUN_VARIABLES):
        dt.distributed_init_method = "env://"
        dt.distributed_world_size = int(environ["WORLD_SIZE"])
        dt.distributed_rank = int(environ["RANK"])
    else:
        slurm = slurm_layout(environ)
        hostnames = subprocess.check_output(["scontrol", "show", "hostnames", slurm.nodelist])
        dt.distributed_init_method = f"tcp://{hostnames.split()[0].decode()}:{dt.distributed_port}"
        dt.distributed_rank = slurm.procid
    dt.distributed_no_spawn = True
    dt.device_id = 0
    logger.info("process %d of %d (one per task, device 0 or CPU), rendezvous at %s", dt.distributed_rank,
                dt.distributed_world_size, dt.distributed_init_method)


def launch_checks(call_main):
    def wrapper(cfg, main, **kwargs):
        # The training loop's hooks need fairseq_cli.train, which may have been imported after us.
        train_module = sys.modules.get(getattr(main, "__module__", ""), None)
        training_loop.patch_module(train_module)
        fully_sharded.patch_module(train_module)
        check_launch(cfg)
        fully_sharded.check_config(cfg)
        if needs_task_init(cfg):
            infer_task_init(cfg.distributed_training)
        return call_main(cfg, main, **kwargs)

    return wrapper


def apply() -> None:
    # fairseq_cli/train.py and hydra_train.py call `distributed_utils.call_main(...)` through the module attribute.
    replace(distributed_utils, "call_main", launch_checks)
