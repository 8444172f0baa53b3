"""Where a training step's time goes inside fairseq's trainer: synchronised per-phase wall times
(forward+backward, gradient clipping, optimizer, the rest), the device-to-host syncs per step, and a
torch.profiler table of the top operators.

    python -m bench.profile_step --data-bin DIR [--device cuda] [--steps 20] [extra fairseq-train args]

The phase timers synchronise the device around each phase, so they attribute time but remove the
overlap of CPU launches with GPU work; the unsynchronised step time is printed beside them.
"""

import argparse
import statistics
import time
from pathlib import Path

import torch
from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.trainer import Trainer

from bench.throughput import SHAPES, fairseq_argv, prepare_data


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def timed(times, name, fn, device):
    """fn wrapped so that each call's synchronised wall time is appended to times[name]."""
    def wrapper(*args, **kwargs):
        sync(device)
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        sync(device)
        times.setdefault(name, []).append(time.perf_counter() - start)
        return out
    return wrapper


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-bin", required=True)
    parser.add_argument("--device", default="cuda", choices=sorted(SHAPES))
    parser.add_argument("--steps", type=int, default=20)
    args, extra = parser.parse_known_args(argv)
    shape, warmup = SHAPES[args.device], 5
    data, _ = prepare_data(Path(args.data_bin).resolve(), Path("/tmp/profile-data"), shape["vocab"])
    fargs = options.parse_args_and_arch(options.get_training_parser(),
                                        fairseq_argv("ours", data, shape, 1000, 25, args.device, extra))
    cfg = convert_namespace_to_omegaconf(fargs)
    task = tasks.setup_task(cfg.task)
    task.load_dataset("train", epoch=1)
    model, criterion = task.build_model(cfg.model), task.build_criterion(cfg.criterion)
    trainer = Trainer(cfg, task, model, criterion)
    itr = task.get_batch_iterator(task.dataset("train"), max_sentences=shape["batch"], max_positions=shape["tokens"],
                                  ignore_invalid_inputs=True, seed=1, required_batch_size_multiple=1)
    epoch = itr.next_epoch_itr(shuffle=True)
    samples = [next(epoch) for _ in range(3 * args.steps + 2 * warmup)]
    tokens_per_step = statistics.mean(s["ntokens"] for s in samples)

    # 1) unsynchronised steps: what training sees
    for sample in samples[:warmup]:
        trainer.train_step([sample])
    sync(args.device)
    start = time.perf_counter()
    for sample in samples[warmup:warmup + args.steps]:
        trainer.train_step([sample])
    sync(args.device)
    step_s = (time.perf_counter() - start) / args.steps

    # 2) synchronised phases
    times = {}
    step = timed(times, "step", trainer.train_step, args.device)
    trainer.task.train_step = timed(times, "forward+backward", trainer.task.train_step, args.device)
    trainer.clip_grad_norm = timed(times, "clip grad norm", trainer.clip_grad_norm, args.device)
    trainer.task.optimizer_step = timed(times, "optimizer", trainer.task.optimizer_step, args.device)
    for sample in samples[warmup + args.steps:2 * warmup + 2 * args.steps]:
        step([sample])
    medians = {name: statistics.median(values[warmup:]) for name, values in times.items()}
    medians["rest (sample prep, logging, checks)"] = medians["step"] - sum(
        medians[k] for k in ("forward+backward", "clip grad norm", "optimizer"))

    # 3) profiler over the same number of steps
    activities = [torch.profiler.ProfilerActivity.CPU] + (
        [torch.profiler.ProfilerActivity.CUDA] if args.device == "cuda" else [])
    with torch.profiler.profile(activities=activities) as prof:
        for sample in samples[2 * warmup + 2 * args.steps:]:
            step([sample])
        sync(args.device)
    events = prof.key_averages()
    syncs = sum(e.count for e in events if e.key in ("cudaStreamSynchronize", "cudaDeviceSynchronize"))
    # Device-side events only (kernels, memcpys): ops and fairseq's named ranges would count them twice.
    kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
    device_s = sum(e.self_device_time_total for e in kernels) / 1e6

    print(f"\n{' '.join(extra) or 'defaults'}: {tokens_per_step:,.0f} tokens/step; unsynchronised step {1e3 * step_s:.1f} ms = "
          f"{tokens_per_step / step_s:,.0f} tokens/s")
    print("synchronised phases (median ms per step):")
    for name, value in medians.items():
        print(f"  {name:40s} {1e3 * value:8.1f}")
    if args.device == "cuda":
        print(f"device busy {1e3 * device_s / args.steps:.1f} ms per step (kernel time, profiled); "
              f"{syncs / args.steps:.0f} host-device syncs per step")
    key = "self_cuda_time_total" if args.device == "cuda" else "self_cpu_time_total"
    print(events.table(sort_by=key, row_limit=20, max_name_column_width=70))


if __name__ == "__main__":
    main()
