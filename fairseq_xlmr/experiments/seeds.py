"""`xlmr finetune-seeds`: fine-tune with several seeds, evaluate each run, report mean ± std, as XLM-R
reports its fine-tuning results (Conneau et al., 2020: averages over five seeds).

    xlmr finetune-seeds --name xnli --seeds 1 2 3 4 5 --save-dir runs/xnli -- <fairseq-train args>

Each seed trains into `<save-dir>/seed<k>` (`--seed k --save-dir ...` are added to the fairseq-train
arguments), then `checkpoint_best.pt` is evaluated and `<save-dir>/seed<k>/results.json` written
(format: `fairseq_xlmr.evaluation.results`): by `xlmr eval-qa`'s code for `--task xlmr_span_qa` (F1, with
EM under `extra_metrics`), by `xlmr finetune-eval`'s for the classification tasks. A seed whose
results.json exists is not run again, so an interrupted sweep resumes. `<save-dir>/summary.json` holds the aggregate.

Two conveniences for running from a pretrained checkpoint (`--finetune-from-model`):
- the model options that must match it (layers, dims, heads, max positions, LayerNorm epsilon, sentence
  pooling) are read from that checkpoint and put first on the command line, so one script fits a released XLM-R, our `make demo` model or any other
  (options given explicitly still win: fairseq keeps the last occurrence);
- `--epochs E` gives XTREME's schedule, a learning rate decaying linearly to 0 over E epochs:
  --max-update and --total-num-update (the horizon of fairseq's `polynomial_decay`, which the
  command line must give) are set to E x ceil(training examples / (batch size x update freq x GPUs)).
"""

import logging
import math
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List, Sequence

from fairseq_xlmr.evaluation.results import RESULTS_FILE, aggregate_seeds, format_summary, read_results
from fairseq_xlmr.files import write_json

logger = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
TRANSFER_TOP_LAYERS = 4
TRANSFER_LR = "1e-4"
RECIPES = {
    "xtreme": "every weight trains (XLM-R's and XTREME's fine-tuning; with full training sets it reproduces the paper's "
              "tables)",
    "transfer": f"the embeddings and all but the top {TRANSFER_TOP_LAYERS} layers of the pretrained model stay frozen "
                f"(without dropout, their states cached) and the rest trains at lr {TRANSFER_LR} (an --lr given "
                "explicitly wins): for small training sets, where it keeps the zero-shot transfer of the frozen "
                "features and trains ~3x faster (docs/experiments/multilingual_e5.md)",
}
BEST_CHECKPOINT = "checkpoint_best.pt"
OWN_OPTIONS = ("--seed", "--save-dir")  # set per run by the driver


def run(args) -> int:
    summary = run_seeds(args.name, args.seeds, args.save_dir, args.train_args, cpu=args.cpu, epochs=args.epochs,
                        warmup_ratio=args.warmup_ratio, recipe=args.recipe)
    print(format_summary(summary))
    return 0


def check_train_args(train_args: Sequence[str]) -> None:
    for arg in train_args:
        if arg.split("=")[0] in OWN_OPTIONS:
            raise ValueError(f"fairseq-train argument {arg} is set per run by finetune-seeds; pass --seeds and "
                             "--save-dir to finetune-seeds instead.")


def fairseq_train_subprocess(argv: List[str]) -> None:
    """Run fairseq-train in a fresh process (GPU memory and logging state are released after each seed)."""
    subprocess.run([sys.executable, "-m", "fairseq_cli.train", *argv], check=True)


def option_value(argv: Sequence[str], option: str):
    """The value of `option` in an argv list (last occurrence, `--opt v` or `--opt=v`), or None."""
    value = None
    for i, arg in enumerate(argv):
        if arg == option and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(option + "="):
            value = arg.split("=", 1)[1]
    return value


def evaluator(train_args: Sequence[str]) -> Callable:
    """`evaluate_and_write(checkpoint, name, cpu=...)` for the fairseq-train `--task` of `train_args`.

    Span QA decodes answers (n-best, answer length) and scores F1/EM; the classification tasks score
    accuracy or F1 from the criterion's counts. Each evaluator rejects the other's checkpoints.
    """
    if option_value(train_args, "--task") == "xlmr_span_qa":
        from fairseq_xlmr.evaluation.eval_qa import evaluate_and_write
    else:
        from fairseq_xlmr.evaluation.finetune_eval import evaluate_and_write
    return evaluate_and_write


def pretrained_model_args(checkpoint_path) -> List[str]:
    """fairseq-train options for the sizes, LayerNorm epsilon and pooling of a pretrained checkpoint."""
    from fairseq_xlmr.task_checks import as_train_args, pretrained_model_options

    return as_train_args(pretrained_model_options(checkpoint_path))


def recipe_args(recipe: str, checkpoint_path) -> List[str]:
    """fairseq-train options of a RECIPES entry for the pretrained checkpoint (None: no pretrained model)."""
    if recipe not in RECIPES:
        raise ValueError(f"--recipe {recipe!r}; known: {', '.join(RECIPES)}.")
    if recipe == "xtreme":
        return []
    if checkpoint_path is None:
        raise ValueError("--recipe transfer freezes the lower layers of a pretrained model; pass --finetune-from-model "
                         "among the fairseq-train arguments.")
    from fairseq_xlmr.task_checks import pretrained_model_options

    layers = pretrained_model_options(checkpoint_path)["encoder_layers"]
    return ["--freeze-layers", str(max(0, layers - TRANSFER_TOP_LAYERS)), "--lr", TRANSFER_LR]


def schedule_args(train_args: List[str], epochs: float, warmup_ratio: float) -> List[str]:
    """--max-update/--warmup-updates for `epochs` epochs of the training set the arguments describe."""
    from fairseq import options, tasks

    from fairseq_xlmr.finetune.classification import XlmrClassificationTask

    # The argparse namespace, not fairseq's config: polynomial_decay's total_num_update is not set yet.
    args = options.parse_args_and_arch(options.get_training_parser(), train_args)
    if not args.batch_size:
        raise ValueError("--epochs needs --batch-size (sentences per GPU) among the fairseq-train arguments.")
    if args.lr_scheduler != "polynomial_decay":
        raise ValueError(f"--epochs sets the horizon of --lr-scheduler polynomial_decay, but the arguments ask for "
                         f"{args.lr_scheduler}; pass --lr-scheduler polynomial_decay or leave --epochs out.")
    task = tasks.setup_task(args)
    if not isinstance(task, XlmrClassificationTask):
        raise ValueError(f"--epochs counts the training set of the xlmr_*_classification tasks, not {args.task}.")
    per_update = args.batch_size * args.update_freq[0] * args.distributed_world_size
    updates = math.ceil(epochs * math.ceil(task.train_size / per_update))
    logger.info("%d training examples, %d per update: %g epochs = %d updates", task.train_size, per_update, epochs,
                updates)
    return ["--max-update", str(updates), "--total-num-update", str(updates),
            "--warmup-updates", str(round(warmup_ratio * updates))]


def run_seeds(name: str, seeds: Sequence[int], save_dir, train_args: Sequence[str], cpu: bool = False,
              epochs: float = None, warmup_ratio: float = 0.0, recipe: str = "xtreme",
              train: Callable[[List[str]], None] = fairseq_train_subprocess) -> Dict:
    """Train and evaluate one run per seed (skipping seeds already done); return and write the summary."""
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds repeats a seed: {list(seeds)}")
    train_args = [str(arg) for arg in train_args]
    check_train_args(train_args)
    evaluate_and_write = evaluator(train_args)
    if "--user-dir" not in train_args:
        train_args += ["--user-dir", str(Path(__file__).resolve().parents[1])]
    pretrained = option_value(train_args, "--finetune-from-model")
    # First on the command line, so that options given explicitly win (fairseq keeps the last occurrence).
    train_args = recipe_args(recipe, pretrained) + train_args
    if pretrained:
        train_args = pretrained_model_args(pretrained) + train_args
    if epochs is not None:
        train_args += schedule_args(train_args, epochs, warmup_ratio)
    save_dir = Path(save_dir)
    results = []
    for seed in seeds:
        run_dir = save_dir / f"seed{seed}"
        if (run_dir / RESULTS_FILE).is_file():
            logger.info("seed %d: %s exists, not run again", seed, run_dir / RESULTS_FILE)
        else:
            logger.info("seed %d: fine-tuning into %s", seed, run_dir)
            train(train_args + ["--seed", str(seed), "--save-dir", str(run_dir)])
            checkpoint = run_dir / BEST_CHECKPOINT
            if not checkpoint.is_file():
                raise FileNotFoundError(f"{checkpoint} was not written: the run needs validation and saving "
                                        "(no --disable-validation, --no-save).")
            evaluate_and_write(checkpoint, name, cpu=cpu)
        results.append(read_results(run_dir))
    summary = aggregate_seeds(results)
    write_json(save_dir / SUMMARY_FILE, summary, indent=2)
    return summary
