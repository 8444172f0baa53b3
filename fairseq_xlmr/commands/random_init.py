"""`xlmr random-init`: a randomly initialised twin of a model dir (same config, dict, SentencePiece)."""

from fairseq_xlmr.files import CHECKPOINT_FILE, MODEL_DIR_FILES


def add_arguments(parser) -> None:
    parser.add_argument("model_dir", help="source model dir: " + " + ".join(MODEL_DIR_FILES))
    parser.add_argument("out_dir", help="where the random-init model dir is written")
    parser.add_argument("--checkpoint-file", default=CHECKPOINT_FILE, help="checkpoint file name in model_dir")
    parser.add_argument("--seed", type=int, default=1, help="seed of the initialisation")


def main(args) -> int:
    from fairseq_xlmr.experiments import random_init

    return random_init.run(args)
