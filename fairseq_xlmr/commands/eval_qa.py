"""`xlmr eval-qa`: per-language EM/F1 of a fine-tuned xlmr_span_qa checkpoint (MLQA/XQuAD) -> results.json."""


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="fine-tuned checkpoint (e.g. checkpoint_best.pt)")
    parser.add_argument("--data", default=None,
                        help="directory with the dev/test SQuAD-format files (default: where training read them)")
    parser.add_argument("--eval-languages", default=None,
                        help="context languages (default: those the checkpoint was validated on)")
    parser.add_argument("--question-languages", default=None,
                        help="question languages for MLQA G-XLT (default: the checkpoint's setting)")
    parser.add_argument("--valid-file", default=None,
                        help="dev file name, with {lang} and {question} (default: the checkpoint's)")
    parser.add_argument("--test-file", default=None,
                        help="test file name, with {lang} and {question} (default: the checkpoint's)")
    parser.add_argument("--qa-metric", choices=["mlqa", "squad"], default=None,
                        help="answer normalisation (default: the checkpoint's; squad for XQuAD)")
    parser.add_argument("--spm-model", default=None,
                        help="SentencePiece model with dict.txt beside it (default: the checkpoint's setting)")
    parser.add_argument("--name", default="mlqa", help="benchmark name written to results.json (mlqa, xquad)")
    parser.add_argument("--batch-size", type=int, default=32, help="windows per forward pass")
    parser.add_argument("--out", default=None, help="results file (default: results.json beside the checkpoint)")
    parser.add_argument("--cpu", action="store_true", help="run on CPU even if a GPU is available")


def main(args) -> int:
    from fairseq_xlmr.evaluation import eval_qa

    return eval_qa.run(args)
