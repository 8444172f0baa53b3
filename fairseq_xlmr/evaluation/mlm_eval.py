"""`xlmr eval-mlm`: per-language masked-LM loss and perplexity of an `xlmr_mlm` checkpoint.

With `--with-init` it also scores a freshly initialised model of the same architecture and seed:
the "before training" column of `make demo`. With `--start CKPT` it also scores another checkpoint's weights
on the same data and masks: the model a continued-pretraining run started from.

The validation masks are drawn from a seed, by default the run's own (`common.seed`), so runs trained
with different seeds are scored on different masks; that alone moves a mean perplexity by a few points
(docs/fusion.md: 213.1 to 217.8 for one model). `--mask-seed` scores every checkpoint on the same masks.
Every checkpoint is scored with the plain `xlmr_mlm` cross-entropy whatever criterion trained it
(distillation, adversarial, language weights: their `loss_<lang>` are that cross-entropy anyway), so no
teacher or discriminator is loaded.
"""

import math
import os
from collections import defaultdict

import torch
from fairseq import tasks, utils
from omegaconf import OmegaConf
from tqdm import tqdm

from fairseq_xlmr import checkpoint
from fairseq_xlmr.evaluation.results import average, write_results
from fairseq_xlmr.files import write_json
from fairseq_xlmr.tables import markdown_table


def load_run(checkpoint_path, data=None, mask_seed=None):
    """(cfg, task, state) of a training run, from its checkpoint; `mask_seed` replaces the masks' seed."""
    if mask_seed is not None and mask_seed < 0:
        raise ValueError(f"--mask-seed must be >= 0, got {mask_seed}; use any seed, the same for every "
                         "checkpoint you compare.")
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
    if mask_seed is not None:
        # The task masks (and orders) evaluation samples with task.seed; common.seed stays the run's, so
        # --with-init still rebuilds the run's initialisation.
        cfg.task.seed = mask_seed
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


def evaluate(checkpoint_path, data=None, split="valid", with_init=False, batch_size=32, mask_seed=None, start=None):
    """{"trained": per-language results[, "init": ...][, "start": ...], "mask_seed": the seed the masks were drawn
    from (`mask_seed`, or the run's own when None)}."""
    cfg, task, state = load_run(checkpoint_path, data, mask_seed)
    task.load_dataset(split)
    # The plain masked-LM loss, whichever criterion trained the model (see the module docstring).
    criterion = task.build_criterion(OmegaConf.create({"_name": "xlmr_mlm"}))
    utils.set_torch_seed(cfg.common.seed)
    model = task.build_model(cfg.model)
    results = {"mask_seed": int(cfg.task.seed)}
    if with_init:
        results["init"] = language_losses(model, task, criterion, split, batch_size)
    if start is not None:
        model.load_state_dict(checkpoint.load(start)["model"], strict=True)
        results["start"] = language_losses(model, task, criterion, split, batch_size)
    model.load_state_dict(state["model"], strict=True)
    results["trained"] = language_losses(model, task, criterion, split, batch_size)
    return results


def format_table(results):
    columns = [name for name in ("init", "start", "trained") if name in results]
    rows = [[lang] + [f"{results[name][lang]['ppl']:.1f}" for name in columns] + [str(trained["predicted"])]
            for lang, trained in results["trained"].items()]
    return "\n".join(markdown_table(["lang"] + [f"ppl {name}" for name in columns] + ["predicted tokens"], rows))


def run(args):
    results = evaluate(args.checkpoint, args.data, args.split, args.with_init, args.batch_size, args.mask_seed,
                       args.start)
    print(format_table(results))
    if args.json:
        write_json(args.json, results)
    seed = results["mask_seed"]
    ppl = {lang: r["ppl"] for lang, r in results["trained"].items()}
    if args.results_dir:
        os.makedirs(args.results_dir, exist_ok=True)
        write_results(args.results_dir, f"{args.split}_ppl", seed, "ppl", ppl, split=args.split,
                      extra={"checkpoint": args.checkpoint})
    print(f"{args.checkpoint}: mean {args.split} ppl {average(ppl):.2f} over {len(ppl)} languages "
          f"(masks of seed {seed})")
    return 0
