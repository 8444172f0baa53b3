"""`xlmr train-spm`: train an α-sampled SentencePiece unigram model + dict.txt."""

import os

from fairseq_xlmr.files import DICT_FILE, SPM_FILE, list_option


def add_arguments(parser) -> None:
    parser.add_argument("--corpus-dir", required=True, help="directory with one <lang>.txt per language")
    parser.add_argument("--languages", type=list_option("--languages"), default=None,
                        help="comma list of languages to use (default: every *.txt in --corpus-dir)")
    parser.add_argument("--out-dir", required=True, help=f"where {SPM_FILE} and {DICT_FILE} go")
    parser.add_argument("--vocab-size", type=int, default=250000,
                        help="number of SentencePiece pieces (XLM-R: 250000; a few hundred for tiny demos)")
    parser.add_argument("--character-coverage", type=float, default=0.9995,
                        help="share of characters the vocabulary must cover (SentencePiece's option)")
    parser.add_argument("--sample-sentences", type=int, default=1_000_000,
                        help="sentences drawn for training (capped at the number available)")
    parser.add_argument("--alpha", type=float, default=0.3,
                        help="language sampling exponent: q_i ∝ p_i^alpha (XLM-R: 0.3)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the sentence sample")
    parser.add_argument("--num-threads", type=int, default=os.cpu_count() or 1,
                        help="SentencePiece trainer threads")
    parser.add_argument("--disjoint-vocab", action="store_true",
                        help="ablation 'no anchor points': one model per language (--vocab-size split evenly) "
                             f"in <out-dir>/<lang>/, and one {DICT_FILE} where each language's pieces have "
                             "their own ids; `xlmr binarize --spm-model <out-dir>` encodes with them")


def main(args) -> int:
    from fairseq_xlmr.preprocess import spm

    return spm.run(args)
