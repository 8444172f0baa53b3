"""`xlmr finetune-seeds`: fine-tune with several seeds, evaluate each, mean ± std -> summary.json."""

from fairseq_xlmr.experiments.seeds import RECIPES


def add_arguments(parser) -> None:
    parser.add_argument("--name", required=True,
                        help="benchmark name written to results.json (xnli, pawsx, ner, pos, mlqa)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5],
                        help="one run per seed (XLM-R averaged 5)")
    parser.add_argument("--save-dir", required=True, help="runs go to <save-dir>/seed<k>")
    parser.add_argument("--cpu", action="store_true", help="evaluate on CPU")
    parser.add_argument("--epochs", type=float, default=None,
                        help="epochs of a linearly decaying learning rate (sets --max-update; use with "
                             "--lr-scheduler polynomial_decay); without it, the fairseq-train arguments decide")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="xtreme",
                        help="; ".join(f"{name}: {text}" for name, text in RECIPES.items()))
    parser.add_argument("--warmup-ratio", type=float, default=0.0,
                        help="share of the updates with linear warmup, with --epochs (XTREME: 0; fairseq's GLUE "
                             "recipe: 0.06)")
    parser.add_argument("train_args", nargs="*", metavar="-- FAIRSEQ_TRAIN_ARGS",
                        help="fairseq-train arguments after `--` (data, task, model, optimisation)")


def main(args) -> int:
    from fairseq_xlmr.experiments import seeds

    return seeds.run(args)
