"""`xlmr average`: uniform or weighted average of checkpoints of one architecture and dictionary."""


def add_arguments(parser) -> None:
    parser.add_argument("checkpoints", nargs="*", help="checkpoint files to average (or use --last-k)")
    parser.add_argument("--last-k", type=int, default=0,
                        help="average the K newest checkpoint_<epoch>_<update>.pt (else checkpoint<epoch>.pt) "
                             "of --save-dir")
    parser.add_argument("--save-dir", help="a training run's checkpoint directory, for --last-k")
    parser.add_argument("--weights", default=None,
                        help="comma-separated weights, one per checkpoint, normalised to sum 1 (default: uniform)")
    parser.add_argument("--dict", default=None,
                        help="comma-separated dict.txt files, one per checkpoint or one for all (default: "
                             "dict.txt beside each checkpoint, else in its run's task.data; none found is an error)")
    parser.add_argument("--out", required=True,
                        help="output checkpoint (.pt); dict.txt and sentencepiece.bpe.model found beside the "
                             "inputs are copied beside it, so a `model.pt` output makes a model dir")


def main(args) -> int:
    from fairseq_xlmr.fusion import average

    return average.run(args)
