"""`xlmr finetune-eval`: per-language dev/test metrics of a fine-tuned checkpoint -> results.json.

Works for checkpoints of `xlmr_sentence_classification` and `xlmr_token_classification`. The task
is rebuilt from the checkpoint (labels from its task state, so the training files are not needed);
`--data` (or other task options, `--override key=value`) re-point it when the files moved.

`--center` (sentence classification): before the head, every language's sentence vectors are shifted
so that their mean over the evaluated split equals the mean over the training split (the head's
languages), removing the language-identity offset (Libovický et al., 2020) that otherwise can make
an English-trained head give one label to nearly every sentence of another language. It reads the
unlabelled test sentences (transductive) and the training files; the training language moves only by
the difference between its train and test means.
"""

import logging
from pathlib import Path
from typing import Dict, Optional, Sequence

logger = logging.getLogger(__name__)


def run(args) -> int:
    overrides = parse_overrides(args.override)
    if args.data:
        overrides["data"] = args.data
    path = evaluate_and_write(args.checkpoint, args.name, out=args.out, overrides=overrides,
                              batch_size=args.batch_size, cpu=args.cpu, center=args.center)
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


def _batches(task, model, split: str, batch_size: int, seed: int, use_cuda: bool):
    """Every example of the loaded `split`, in order, none dropped."""
    from fairseq import utils

    batches = task.get_batch_iterator(
        dataset=task.dataset(split), max_sentences=batch_size,
        max_positions=utils.resolve_max_positions(task.max_positions(), model.max_positions()),
        seed=seed, num_workers=0,
    ).next_epoch_itr(shuffle=False)
    for sample in batches:
        yield utils.move_to_cuda(sample) if use_cuda else sample


def language_means(task, model, criterion, split: str, batch_size: int, seed: int, use_cuda: bool):
    """Mean sentence vector (what the head reads) per language of the loaded `split`.

    Returns ((num_languages, dim) means, (num_languages,) counts); a language without examples has a zero row.
    """
    import torch

    sums, counts = None, torch.zeros(len(criterion.languages))
    with torch.no_grad():
        for sample in _batches(task, model, split, batch_size, seed, use_cuda):
            vectors = criterion.sentence_vectors(model, sample["net_input"]).float().cpu()
            language = sample["language"].cpu()
            if sums is None:
                sums = torch.zeros(len(criterion.languages), vectors.size(1))
            sums.index_add_(0, language, vectors)
            counts.index_add_(0, language, torch.ones(len(language)))
    return sums / counts.clamp(min=1).unsqueeze(1), counts


def evaluate_checkpoint(checkpoint, splits: Sequence[str] = ("valid", "test"), overrides: Optional[Dict] = None,
                        batch_size: int = 32, cpu: bool = False, center: bool = False) -> Dict:
    """Evaluate `checkpoint` on `splits` (a split without files configured is skipped).

    `center`: sentence classification only; see the module docstring.
    Returns {"metric", "eval_languages", "train_languages", "seed", "splits": {split: {"per_language",
    "average", "loss"}}}, metric values in percent.
    """
    import torch
    from fairseq import checkpoint_utils
    from fairseq.logging import metrics

    from fairseq_xlmr.criterions.xlmr_sentence_classification import XlmrSentenceClassificationCriterion
    from fairseq_xlmr.finetune.classification import SPLIT_FIELDS, XlmrClassificationTask

    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(checkpoint)], arg_overrides=overrides)
    if not isinstance(task, XlmrClassificationTask):
        raise ValueError(f"{checkpoint} was trained with task {cfg.task._name}; finetune-eval reads "
                         "xlmr_sentence_classification and xlmr_token_classification checkpoints.")
    model = models[0].eval()
    use_cuda = torch.cuda.is_available() and not cpu
    if use_cuda:
        model.cuda()
    criterion = task.build_criterion(cfg.criterion)
    if center and not isinstance(criterion, XlmrSentenceClassificationCriterion):
        raise ValueError(f"--center moves sentence vectors, but {checkpoint} is a {cfg.task._name} checkpoint; "
                         "drop --center (it applies to xlmr_sentence_classification).")
    metric = task.metric_name(task.cfg)
    result = {"metric": metric, "eval_languages": task.eval_languages, "train_languages": task.train_languages,
              "seed": cfg.common.seed, "splits": {}}
    seed = cfg.common.seed
    if center:  # the training split's mean sentence vector: the head was fitted around it
        task.load_dataset("train")  # first: a missing training file stops here
        means, counts = language_means(task, model, criterion, "train", batch_size, seed, use_cuda)
        reference = (means * counts.unsqueeze(1)).sum(0) / counts.sum()
    for split in splits:
        if not getattr(task.cfg, SPLIT_FIELDS[split]):
            logger.info("no %s files configured; skipping %s", split, split)
            continue
        task.load_dataset(split)
        shift = {}
        if center:
            means, counts = language_means(task, model, criterion, split, batch_size, seed, use_cuda)
            shift["center_shift"] = (reference - means) * (counts > 0).unsqueeze(1)  # absent languages: none
        logging_outputs = []
        with torch.no_grad():  # as task.valid_step (the model is in eval mode), with the shift when centring
            for sample in _batches(task, model, split, batch_size, seed, use_cuda):
                logging_outputs.append(criterion(model, sample, **shift)[2])
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
                       cpu: bool = False, center: bool = False) -> Path:
    """Evaluate on dev and test and write results.json: test results (dev if there is no test split)."""
    from fairseq_xlmr.evaluation.results import write_results

    checkpoint = Path(checkpoint)
    evaluation = evaluate_checkpoint(checkpoint, overrides=overrides, batch_size=batch_size, cpu=cpu, center=center)
    splits = evaluation["splits"]
    split = "test" if "test" in splits else "valid"
    extra = {"train_languages": evaluation["train_languages"], "checkpoint": checkpoint.name}
    if center:
        extra["centred"] = True
    if split == "test" and "valid" in splits:
        extra["dev"] = {key: splits["valid"][key] for key in ("per_language", "average")}
    return write_results(Path(out) if out else checkpoint.parent, name, evaluation["seed"], evaluation["metric"],
                         splits[split]["per_language"], split=split, extra=extra)
