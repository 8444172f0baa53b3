"""`xlmr eval-qa`: EM/F1 per language of a fine-tuned `xlmr_span_qa` checkpoint on MLQA / XQuAD files.

Decodes exactly as validation during training does (same task code) on the dev files and, when they
all exist, the test files, then writes `results.json` (format: `fairseq_xlmr.evaluation.results`;
metric f1, EM under `extra_metrics.em`, dev scores under `dev`), the file `xlmr report` reads for the
paper's Table 3, and `predictions_<split>_<pair>.json` ({question id: answer}, the input of the
official evaluation scripts) beside it.
"""

import json
import logging
import os
from pathlib import Path
from typing import Dict, Optional

import torch

from fairseq_xlmr.files import write_json

logger = logging.getLogger(__name__)

TASK_OPTIONS = ("eval_languages", "question_languages", "valid_file", "test_file", "qa_metric", "spm_model")


def run(args) -> int:
    overrides = {name: getattr(args, name) for name in ("data",) + TASK_OPTIONS if getattr(args, name) is not None}
    path = evaluate_and_write(args.checkpoint, args.name, out=args.out, overrides=overrides,
                              batch_size=args.batch_size, cpu=args.cpu)
    results = json.loads(path.read_text(encoding="utf-8"))
    em = results["extra_metrics"]["em"]["per_language"]
    print(f"{args.name} {results['split']} F1 / EM -> {path}")
    for name, value in results["per_language"].items():
        print(f"  {name:<8} {value:6.2f} / {em[name]:6.2f}")
    print(f"  {'avg':<8} {results['average']:6.2f} / {results['extra_metrics']['em']['average']:6.2f}")
    return 0


@torch.no_grad()
def evaluate_split(model, task, criterion, split: str, batch_size: int, device: str) -> Dict:
    """{"scores": {pair: {"f1", "exact_match", "count"}}, "predictions": {pair: {id: answer}}} of one split."""
    from fairseq_xlmr.data.squad import keep_best

    task.load_dataset(split)
    batches = task.get_batch_iterator(task.dataset(split), max_sentences=batch_size,
                                      max_positions=task.max_positions(), num_workers=0).next_epoch_itr(shuffle=False)
    best = {}
    for sample in batches:
        sample = _to_device(sample, device)
        for _, example, score, begin, end in task.decode_batch(sample, criterion.span_logits(model, sample)):
            keep_best(best, example, (score, begin, end))
    return {"scores": task.score_split(split, best), "predictions": task.predictions(split, best)}


def evaluate_checkpoint(checkpoint, overrides: Optional[Dict] = None, batch_size: int = 32,
                        cpu: bool = False) -> Dict:
    """Evaluate on the dev files and, if they all exist, the test files.

    Returns {"seed", "splits": {split: {"scores", "predictions"}}}, scores in percent.
    """
    from fairseq import checkpoint_utils


    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"--checkpoint {str(checkpoint)!r} does not exist; give a checkpoint written by "
                                "fairseq-train --task xlmr_span_qa (e.g. <save_dir>/checkpoint_best.pt).")
    # The training file is not needed; validation reads the dev files.
    overrides = dict(overrides or {}, train_file="", valid_subset="valid")
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(checkpoint)], arg_overrides=overrides)
    if cfg.task._name != "xlmr_span_qa":
        raise ValueError(f"{checkpoint} was trained with task {cfg.task._name!r}; eval-qa reads xlmr_span_qa "
                         "checkpoints (`xlmr finetune-eval` reads the classification ones).")
    device = "cuda" if torch.cuda.is_available() and not cpu else "cpu"
    model = models[0].to(device).eval()
    criterion = task.build_criterion(cfg.criterion)
    splits = ["valid"]
    if all(os.path.isfile(path) for _, path in task.split_files("test")):
        splits.append("test")
    else:
        logger.info("not every test file exists (%s); reporting dev results",
                    ", ".join(os.path.basename(p) for _, p in task.split_files("test")))
    return {"seed": int(cfg.common.seed),
            "splits": {split: evaluate_split(model, task, criterion, split, batch_size, device) for split in splits}}


def evaluate_and_write(checkpoint, name: str, out=None, overrides: Optional[Dict] = None, batch_size: int = 32,
                       cpu: bool = False) -> Path:
    """Evaluate and write results.json (test results, dev if there is no test split) + predictions."""
    from fairseq_xlmr.evaluation.results import average, write_results

    checkpoint = Path(checkpoint)
    evaluation = evaluate_checkpoint(checkpoint, overrides, batch_size, cpu)
    splits = evaluation["splits"]
    split = "test" if "test" in splits else "valid"

    def table(scores, key):
        per_language = {pair: scores[pair][key] for pair in scores}
        return {"per_language": per_language, "average": average(per_language)}

    scores = splits[split]["scores"]
    extra = {"checkpoint": checkpoint.name, "extra_metrics": {"em": table(scores, "exact_match")},
             "count": {pair: s["count"] for pair, s in scores.items()}}
    if split == "test":
        extra["dev"] = dict(table(splits["valid"]["scores"], "f1"),
                            extra_metrics={"em": table(splits["valid"]["scores"], "exact_match")})
    path = write_results(Path(out) if out else checkpoint.parent, name, evaluation["seed"], "f1",
                         table(scores, "f1")["per_language"], split=split, extra=extra)
    for split_name, result in splits.items():
        for pair, predictions in result["predictions"].items():
            write_json(path.parent / f"predictions_{split_name}_{pair}.json", predictions)
    return path


def _to_device(sample, device):
    from fairseq import utils

    return utils.move_to_cuda(sample) if device == "cuda" else sample
