"""`xlmr fetch-corpora`: download and convert the real multilingual text."""

from fairseq_xlmr.preprocess.corpora import DEFAULT_SOURCES, SOURCES


def add_arguments(parser) -> None:
    parser.add_argument("--out-dir", default="corpus", help="output root: mono/, para/, udhr/, manifest.json")
    parser.add_argument("--cache-dir", default="~/.cache/fairseq_xlmr/downloads",
                        help="downloaded .deb/.tgz files, sha256-checked on every run")
    parser.add_argument("--languages", default=None,
                        help="comma list of language codes to write (default: all with >= --min-lines lines)")
    parser.add_argument("--sources", default=",".join(DEFAULT_SOURCES),
                        help=f"comma subset of {','.join(SOURCES)} (default: {','.join(DEFAULT_SOURCES)})")
    parser.add_argument("--min-lines", type=int, default=200,
                        help="without --languages: write mono (para) languages with >= this many "
                             "lines (pairs)")
    parser.add_argument("--mono-sources", default=None,
                        help="ablation 'domain mismatch': lang=source pairs, e.g. en=fortunes,de=gettext, keep "
                             "only that source's lines in mono/<lang>.txt (other languages keep all sources)")
    parser.add_argument("--heldout-pairs", type=int, default=0,
                        help="hold out up to N gettext pairs per language from all training text (mono and para) "
                             "as heldout/tatoeba.<lang>-eng.{<lang>,eng}: in-domain retrieval that pretraining "
                             "never saw (0: none)")
    parser.add_argument("--allow-unpinned", action="store_true",
                        help="if a pinned version left the mirror, use the current one (outputs then differ)")


def main(args) -> int:
    from fairseq_xlmr.preprocess import corpora

    return corpora.run(args)
