"""`xlmr finetune-eval`: per-language dev/test metrics of a fine-tuned checkpoint -> results.json.

Works for checkpoints of `xlmr_sentence_classification` and `xlmr_token_classification`. The task
is rebuilt from the checkpoint (labels from its task state, so the training files are not needed);
`--data` (or other task options, `--override key=value`) re-point it when the files moved.
"""

import logging
from pathlib import Path
from typing import Dict, Optional, Sequence

logger = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="fine-tuned checkpoint (e.g. <save-dir>/checkpoint_best.pt)")
    parser.add_argument("--name", required=True, help="benchmark name written to results.json (xnli, pawsx, ner, pos)")
    parser.add_argument("--out", default=None, help="results file (default: results.json beside the checkpoint)")
    parser.add_argument("--data", default=None, help="raw data directory, if not where training read it")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="task option to change, e.g. eval_languages=de,fr (repeatable)")
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per batch")
    parser.add_argument("--cpu", action="store_true", help="evaluate on CPU even when a GPU is there")


def main(args) -> int:
    overrides = parse_overrides(args.override)
    if args.data:
        overrides["data"] = args.data
    path = evaluate_and_write(args.checkpoint, args.name, out=args.out, overrides=overrides,
                              batch_size=args.batch_size, cpu=args.cpu)
    print(path.read_text(encoding="utf-8"))
    return 0


def parse_overrides(items: Sequence[str]) -> Dict[str, str]:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--override must be KEY=VALUE, got {item!r}")
        overrides[key] = value
    return overrides


def evaluate_checkpoint(checkpoint, splits: Sequence[str] = ("valid", "test"), overrides: Optional[Dict] = None,
                        batch_size: int = 32, cpu: bool = False) -> Dict:
    """Evaluate `checkpoint` on `splits` (a split without files configured is skipped).

    Returns {"metric", "eval_languages", "train_languages", "seed", "splits": {split: {"per_language",
    "average", "loss"}}}, metric values in percent.
    """
    import torch
    from fairseq import checkpoint_utils, utils
    from fairseq.logging import metrics

    import fairseq_xlmr  # noqa: F401  (registers the tasks and criteria)
    from fairseq_xlmr.tasks.finetune_base import SPLIT_FIELDS, XlmrFinetuneTask

    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(checkpoint)], arg_overrides=overrides)
    if not isinstance(task, XlmrFinetuneTask):
        raise ValueError(f"{checkpoint} was trained with task {cfg.task._name}; finetune-eval reads "
                         "xlmr_sentence_classification and xlmr_token_classification checkpoints.")
    model = models[0].eval()
    use_cuda = torch.cuda.is_available() and not cpu
    if use_cuda:
        model.cuda()
    criterion = task.build_criterion(cfg.criterion)
    metric = task.metric_name(task.cfg)
    result = {"metric": metric, "eval_languages": task.eval_languages, "train_languages": task.train_languages,
              "seed": cfg.common.seed, "splits": {}}
    for split in splits:
        if not getattr(task.cfg, SPLIT_FIELDS[split]):
            logger.info("no %s files configured; skipping %s", split, split)
            continue
        task.load_dataset(split)
        batches = task.get_batch_iterator(
            dataset=task.dataset(split), max_sentences=batch_size,
            max_positions=utils.resolve_max_positions(task.max_positions(), model.max_positions()),
            seed=cfg.common.seed, num_workers=0,
        ).next_epoch_itr(shuffle=False)
        logging_outputs = []
        with torch.no_grad():
            for sample in batches:
                sample = utils.move_to_cuda(sample) if use_cuda else sample
                logging_outputs.append(task.valid_step(sample, model, criterion)[2])
        with metrics.aggregate(new_root=True) as aggregator:
            task.reduce_metrics(logging_outputs, criterion)
            stats = aggregator.get_smoothed_values()
        per_language = {lang: float(stats[f"{metric}_{lang}"]) for lang in task.eval_languages}
        result["splits"][split] = {"per_language": per_language, "average": float(stats[metric]),
                                   "loss": float(stats["loss"])}
        logger.info("%s %s: %s | average %.2f", split, metric,
                    " ".join(f"{lang} {value:.2f}" for lang, value in per_language.items()), stats[metric])
    return result


def evaluate_and_write(checkpoint, name: str, out=None, overrides: Optional[Dict] = None, batch_size: int = 32,
                       cpu: bool = False) -> Path:
    """Evaluate on dev and test and write results.json: test results (dev if there is no test split)."""
    from fairseq_xlmr.evaluation.results import write_results

    checkpoint = Path(checkpoint)
    evaluation = evaluate_checkpoint(checkpoint, overrides=overrides, batch_size=batch_size, cpu=cpu)
    splits = evaluation["splits"]
    split = "test" if "test" in splits else "valid"
    extra = {"train_languages": evaluation["train_languages"], "checkpoint": checkpoint.name}
    if split == "test" and "valid" in splits:
        extra["dev"] = {key: splits["valid"][key] for key in ("per_language", "average")}
    return write_results(Path(out) if out else checkpoint.parent, name, evaluation["seed"], evaluation["metric"],
                         splits[split]["per_language"], split=split, extra=extra)
