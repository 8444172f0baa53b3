"""`xlmr binarize`: raw text -> SentencePiece -> fairseq mmap .bin/.idx in one pass (layout and split policy:
preprocess/binarize.py; aligned pairs with --para-dir: binarize_parallel.py; a --spm-model directory of
`xlmr train-spm --disjoint-vocab`: binarize_disjoint.py).
"""

import os
from pathlib import Path

from fairseq_xlmr.files import DICT_FILE, SPM_FILE, list_option
from fairseq_xlmr.preprocess.binarize import DEFAULT_VALID_RULE


def add_arguments(parser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--corpus-dir", help="directory with one <lang>.txt per language")
    source.add_argument("--para-dir", help="directory with aligned <src>-<tgt>.<src> / <src>-<tgt>.<tgt> "
                        "files (parallel mode; see the module docstring)")
    parser.add_argument("--languages", type=list_option("--languages"), default=None,
                        help="comma list of languages to binarize (default: every *.txt in --corpus-dir)")
    parser.add_argument("--pairs", type=list_option("--pairs"), default=None,
                        help="parallel mode: comma list of pairs src-tgt (default: every pair in --para-dir)")
    parser.add_argument("--spm-model", required=True, help=f"SentencePiece model ({SPM_FILE}), or the directory "
                        "of `xlmr train-spm --disjoint-vocab` (each language encoded with its own model)")
    parser.add_argument("--dict", default=None,
                        help=f"fairseq dict.txt matching --spm-model (default: {DICT_FILE} beside it)")
    parser.add_argument("--dest-dir", required=True, help="output directory (data-bin)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument("--valid-lines", type=int, default=None,
                        help="distinct sentences per language held out for valid (chosen by content hash); "
                        f"default: {DEFAULT_VALID_RULE.replace('%', '%%')} (a language needs more lines than that), "
                        "enough for a steady validation loss at a small cost in training text. fairseq-train reads "
                        "this split unless given --disable-validation; 0 writes none")
    parser.add_argument("--test-lines", type=int, default=0,
                        help="distinct sentences per language held out for test (chosen by content hash)")
    parser.add_argument("--num-shards", type=int, default=1,
                        help="split train into K shard dirs (fairseq's data1:data2:... epochs)")
    parser.add_argument("--dedup", action="store_true",
                        help="drop exact duplicates within a language (equal SentencePiece ids), "
                        "keeping the first")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the files of an earlier `xlmr binarize` in --dest-dir (dict.txt, "
                        "[shardK/]<lang>/<split>.{bin,idx}, <src>-<tgt>/<split>.<lang>.{bin,idx}); other files "
                        "there are kept")


def main(args) -> int:
    from fairseq_xlmr.preprocess import binarize, binarize_disjoint, binarize_parallel

    dict_path = Path(args.dict) if args.dict else None
    common = dict(dest_dir=Path(args.dest_dir), valid_lines=args.valid_lines, test_lines=args.test_lines,
                  dedup=args.dedup, overwrite=args.overwrite)
    if args.para_dir:
        if args.num_shards != 1 or args.languages:
            raise ValueError("--para-dir (parallel mode) takes --pairs, not --languages, and no --num-shards; "
                             f"got --languages {args.languages} --num-shards {args.num_shards}.")
        binarize_parallel.binarize_parallel(para_dir=Path(args.para_dir), spm_model=Path(args.spm_model),
                                            dict_path=dict_path, pairs=args.pairs, **common)
        return 0
    monolingual = dict(corpus_dir=Path(args.corpus_dir), languages=args.languages, workers=args.workers,
                       num_shards=args.num_shards, **common)
    if Path(args.spm_model).is_dir():  # `xlmr train-spm --disjoint-vocab` output (ablation: no anchor points)
        binarize_disjoint.binarize_disjoint(spm_dir=Path(args.spm_model), **monolingual)
    else:
        binarize.binarize(spm_model=Path(args.spm_model), dict_path=dict_path, **monolingual)
    return 0
