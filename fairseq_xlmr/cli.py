"""The `xlmr` command: everything that is not `fairseq-train`.

Each subcommand lives in its own module, which exposes `add_arguments(parser)` and `main(args)`;
modules are imported only when their subcommand runs, so `xlmr --help` stays fast.
"""

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "fetch-corpora": ("fairseq_xlmr.preprocess.corpora", "download and convert the real multilingual text"),
    "train-spm": ("fairseq_xlmr.preprocess.spm", "train an α-sampled SentencePiece unigram model + dict.txt"),
    "binarize": ("fairseq_xlmr.preprocess.binarize", "raw text -> SentencePiece -> fairseq mmap .bin/.idx in one pass"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xlmr", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        sub_parser.set_defaults(_module=module_name)
        # Only the chosen subcommand's module is imported (see parse_args below).
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    # First pass finds the subcommand; its module then adds its own arguments.
    known, _ = parser.parse_known_args(argv)
    module = importlib.import_module(known._module)
    sub_parser = parser._subparsers._group_actions[0].choices[known.command]
    module.add_arguments(sub_parser)
    args = parser.parse_args(argv)
    return module.main(args) or 0


if __name__ == "__main__":
    sys.exit(main())
