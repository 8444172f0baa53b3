"""`xlmr fetch-dictionaries`: FreeDict English->X dictionaries ranked by wordfreq -> MUSE files + 0-5000/5000-6500
splits.
"""

from fairseq_xlmr.preprocess.dictionaries import DICTIONARIES, TEST_WORDS, TRAIN_WORDS


def add_arguments(parser) -> None:
    parser.add_argument("--out-dir", required=True, help="where en-<x>.txt, the split files and summary.json go")
    parser.add_argument("--languages", default=",".join(DICTIONARIES),
                        help=f"comma list of target languages, a subset of {','.join(DICTIONARIES)}")
    parser.add_argument("--cache-dir", default="~/.cache/fairseq_xlmr/downloads",
                        help="downloaded .deb and wheel files, sha256-checked on every run")
    parser.add_argument("--max-translations", type=int, default=5,
                        help="keep at most N translations per English word (the most frequent ones)")
    parser.add_argument("--train-words", type=int, default=TRAIN_WORDS,
                        help="the most frequent N English words make the train split (MUSE: 5000)")
    parser.add_argument("--test-words", type=int, default=TEST_WORDS,
                        help="the next N English words make the test split (MUSE: 1500)")
    parser.add_argument("--allow-unpinned", action="store_true",
                        help="if a pinned .deb left the mirror, use the current one (outputs then differ)")


def main(args) -> int:
    from fairseq_xlmr.preprocess import dictionaries

    return dictionaries.run(args)
