"""`xlmr finetune-eval`: per-language dev/test metrics of a fine-tuned checkpoint -> results.json."""


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="fine-tuned checkpoint (e.g. <save-dir>/checkpoint_best.pt)")
    parser.add_argument("--name", required=True, help="benchmark name written to results.json (xnli, pawsx, ner, pos)")
    parser.add_argument("--out", default=None, help="results file (default: results.json beside the checkpoint)")
    parser.add_argument("--data", default=None, help="raw data directory, if not where training read it")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="task option to change, e.g. eval_languages=de,fr (repeatable)")
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per batch")
    parser.add_argument("--cpu", action="store_true", help="evaluate on CPU even when a GPU is there")
    parser.add_argument("--center", action="store_true",
                        help="sentence classification: move each language's mean sentence vector onto the training "
                             "split's before the head (needs the training files)")


def main(args) -> int:
    from fairseq_xlmr.evaluation import finetune_eval

    return finetune_eval.run(args)
