"""`xlmr eval-mlm`: per-language masked-LM loss and perplexity of an `xlmr_mlm` checkpoint.

With `--with-init` it also scores a freshly initialised model of the same architecture and seed:
the "before training" column of `make demo`.
"""

import json
import math
import os
from collections import defaultdict

import torch
from fairseq import tasks, utils
from omegaconf import OmegaConf
from tqdm import tqdm

from fairseq_xlmr import checkpoint


def add_arguments(parser):
    parser.add_argument("checkpoint", help="checkpoint of an xlmr_mlm run (e.g. checkpoints/checkpoint_best.pt)")
    parser.add_argument("--data", help="data-bin to evaluate on (default: the run's task.data)")
    parser.add_argument("--split", default="valid", help="split to score (default: valid)")
    parser.add_argument("--with-init", action="store_true",
                        help="also score the randomly initialised model (same architecture and seed)")
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per batch")
    parser.add_argument("--json", help="write the results as JSON to this path")


def load_run(checkpoint_path, data=None):
    """(cfg, task, state) of a training run, from its checkpoint."""
    if not os.path.isfile(checkpoint_path):
        raise FileNotFoundError(f"checkpoint {checkpoint_path} not found; pass a checkpoint of an xlmr_mlm run, "
                                "e.g. <save_dir>/checkpoint_last.pt (make demo: demo/checkpoints/checkpoint_last.pt).")
    state = checkpoint.load(checkpoint_path)
    cfg = OmegaConf.create(state["cfg"])
    if cfg.task._name != "xlmr_mlm":
        raise ValueError(f"{checkpoint_path} was trained with task {cfg.task._name!r}; eval-mlm scores "
                         "xlmr_mlm checkpoints (per-language losses need the task's languages).")
    if data is not None:
        cfg.task.data = data
    return cfg, tasks.setup_task(cfg.task), state


@torch.no_grad()
def language_losses(model, task, criterion, split, batch_size):
    """{lang: {"loss": bits per predicted token, "ppl": 2**loss, "predicted": tokens}} over `split`."""
    dataset = task.dataset(split)
    iterator = task.get_batch_iterator(dataset, max_sentences=batch_size, max_positions=task.max_positions(),
                                       seed=1, num_workers=0).next_epoch_itr(shuffle=False)
    sums = defaultdict(float)
    model.eval()
    for sample in tqdm(iterator, desc=f"scoring {split}", leave=False):
        _, _, log = criterion(model, sample)
        for lang in task.languages:
            sums["loss_" + lang] += float(log["loss_" + lang])
            sums["size_" + lang] += float(log["sample_size_" + lang])
    results = {}
    for lang in task.languages:
        if sums["size_" + lang] > 0:
            bits = sums["loss_" + lang] / sums["size_" + lang] / math.log(2)
            results[lang] = {"loss": bits, "ppl": 2.0 ** bits, "predicted": int(sums["size_" + lang])}
    return results


def evaluate(checkpoint_path, data=None, split="valid", with_init=False, batch_size=32):
    """{"trained": per-language results[, "init": per-language results]}."""
    cfg, task, state = load_run(checkpoint_path, data)
    task.load_dataset(split)
    criterion = task.build_criterion(cfg.criterion)
    utils.set_torch_seed(cfg.common.seed)
    model = task.build_model(cfg.model)
    results = {}
    if with_init:
        results["init"] = language_losses(model, task, criterion, split, batch_size)
    model.load_state_dict(state["model"], strict=True)
    results["trained"] = language_losses(model, task, criterion, split, batch_size)
    return results


def format_table(results):
    columns = [name for name in ("init", "trained") if name in results]
    header = "| lang | " + " | ".join(f"ppl {name}" for name in columns) + " | predicted tokens |"
    lines = [header, "|" + "---|" * (len(columns) + 2)]
    for lang, trained in results["trained"].items():
        cells = " | ".join(f"{results[name][lang]['ppl']:.1f}" for name in columns)
        lines.append(f"| {lang} | {cells} | {trained['predicted']} |")
    return "\n".join(lines)


def main(args):
    results = evaluate(args.checkpoint, args.data, args.split, args.with_init, args.batch_size)
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0
