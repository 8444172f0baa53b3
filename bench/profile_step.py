"""Where a training step's time goes: our model + criterion + optimizer in a bare loop vs inside
fairseq's trainer, on the same batches, with a torch.profiler table of the top operators.

    python -m bench.profile_step --data-bin DIR [--device cuda] [--steps 30]
"""

import argparse
import time
from pathlib import Path

import torch
from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.trainer import Trainer

from bench.throughput import SHAPES, fairseq_argv, prepare_data


def batches(task, shape, device):
    return task.get_batch_iterator(task.dataset("train"), max_sentences=shape["batch"], max_positions=shape["tokens"],
                                   ignore_invalid_inputs=True, seed=1, num_workers=4 if device == "cuda" else 0,
                                   required_batch_size_multiple=1).next_epoch_itr(shuffle=True)


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-bin", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args(argv)
    shape = SHAPES[args.device]
    data, _ = prepare_data(Path(args.data_bin).resolve(), Path("/tmp/profile-data"), shape["vocab"])
    fargs = options.parse_args_and_arch(options.get_training_parser(),
                                        fairseq_argv("ours", data, shape, 1000, 25, args.device))
    cfg = convert_namespace_to_omegaconf(fargs)
    task = tasks.setup_task(cfg.task)
    task.load_dataset("train", epoch=1)
    model, criterion = task.build_model(cfg.model), task.build_criterion(cfg.criterion)

    # 1) bare loop: the model, criterion and fused AdamW with nothing around them
    model_d, criterion_d = model.to(args.device), criterion.to(args.device)
    opt = torch.optim.AdamW(model_d.parameters(), lr=1e-4, fused=True)
    itr = batches(task, shape, args.device)
    tokens, start = 0, None
    for step, sample in enumerate(itr):
        if step == args.steps + 5:
            break
        if step == 5:
            sync(args.device)
            start, tokens = time.perf_counter(), 0
        sample = {k: (v.to(args.device) if torch.is_tensor(v) else v) for k, v in sample.items()}
        sample["net_input"] = {k: v.to(args.device) for k, v in sample["net_input"].items()}
        loss, _, _ = criterion_d(model_d, sample)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += sample["ntokens"]
    sync(args.device)
    print(f"bare loop: {tokens / (time.perf_counter() - start):,.0f} tokens/s")

    # 2) fairseq's trainer on the same model and batches, profiled
    trainer = Trainer(cfg, task, model, criterion)
    itr = batches(task, shape, args.device)
    samples = [next(itr) for _ in range(args.steps + 5)]
    for sample in samples[:5]:
        trainer.train_step([sample])
    sync(args.device)
    start, tokens = time.perf_counter(), 0
    activities = [torch.profiler.ProfilerActivity.CPU] + (
        [torch.profiler.ProfilerActivity.CUDA] if args.device == "cuda" else [])
    with torch.profiler.profile(activities=activities) as prof:
        for sample in samples[5:]:
            trainer.train_step([sample])
            tokens += sample["ntokens"]
        sync(args.device)
    print(f"fairseq trainer: {tokens / (time.perf_counter() - start):,.0f} tokens/s (profiled)")
    key = "cuda_time_total" if args.device == "cuda" else "cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=60))
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=15, max_name_column_width=60))


if __name__ == "__main__":
    main()
