"""`xlmr consolidate`: the shard files of a fully sharded run -> one unsharded checkpoint (model.pt)."""


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", metavar="CHECKPOINT",
                        help="one shard file of the checkpoint (e.g. checkpoints/checkpoint_last-shard0.pt) or its "
                             "unsharded name (checkpoints/checkpoint_last.pt); every rank's file is read")
    parser.add_argument("--out", required=True,
                        help="output checkpoint (.pt); dict.txt and sentencepiece.bpe.model found beside the shards "
                             "or in the run's task.data are copied beside it, so a `model.pt` output makes a model dir")
    parser.add_argument("--training-state", action="store_true",
                        help="keep the optimizer state, so that a run of any world size (sharded or not) resumes "
                             "from the output with --restore-file; without it, a model file (smaller)")


def main(args) -> int:
    from fairseq_xlmr.interop import sharded_checkpoint

    return sharded_checkpoint.run(args)
