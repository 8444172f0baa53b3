"""Benchmark of `xlmr binarize` against the `spm_encode | fairseq-preprocess` pipeline it replaces.

    .venv/bin/python -m bench.binarize [--corpus-dir DIR] [--megabytes 20] [--workers 2]

Without --corpus-dir it uses /tmp/corpus/mono when present (unless --synthetic), else a synthetic
multilingual corpus of --megabytes MB.
Prints both wall times and the speed-up (baseline / ours).
"""

import argparse
import logging
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

from fairseq_xlmr.preprocess.binarize import binarize
from fairseq_xlmr.preprocess.spm import resolve_language_files, train_spm

_ENCODE_BATCH = 10000


def spm_encode_file(spm_model, src, dst, num_threads: int = 1) -> None:
    """What `spm_encode --output_format=piece` does: one line of space-joined pieces per input line."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    with open(src, encoding="utf-8", errors="replace") as fin, open(dst, "w", encoding="utf-8") as fout:
        def flush(batch):
            encoded = sp.encode(batch, out_type=str, num_threads=num_threads)
            fout.writelines(" ".join(pieces) + "\n" for pieces in encoded)

        batch = []
        for line in fin:
            batch.append(line.rstrip("\n"))
            if len(batch) == _ENCODE_BATCH:
                flush(batch)
                batch = []
        if batch:
            flush(batch)


def run_fairseq_preprocess(encoded_text, dict_path, dest_dir, workers: int = 1) -> Path:
    """Stock `fairseq-preprocess --only-source --srcdict` run in-process; returns the dataset prefix."""
    from fairseq import options
    from fairseq_cli import preprocess

    args = options.get_preprocessing_parser().parse_args([
        "--only-source", "--srcdict", str(dict_path), "--trainpref", str(encoded_text),
        "--destdir", str(dest_dir), "--workers", str(workers), "--dataset-impl", "mmap",
    ])
    handlers = list(preprocess.logger.handlers)
    try:
        preprocess.main(args)
    finally:
        # fairseq adds a FileHandler per call; drop it so repeated runs do not pile them up.
        for handler in set(preprocess.logger.handlers) - set(handlers):
            preprocess.logger.removeHandler(handler)
            handler.close()
    return Path(dest_dir) / "train"


def binarize_benchmark_baseline(corpus_dir, spm_model, dict_path, work_dir, workers: int = 1,
                                languages: Optional[Sequence[str]] = None) -> float:
    """Wall seconds of the two-step baseline on every language: SentencePiece-encode to a temp text
    file (batched, `workers` threads), then fairseq-preprocess with `--workers`."""
    start = time.perf_counter()
    for lang, path in resolve_language_files(Path(corpus_dir), languages).items():
        encoded = Path(work_dir) / f"{lang}.spm.txt"
        spm_encode_file(spm_model, path, encoded, num_threads=workers)
        run_fairseq_preprocess(encoded, dict_path, Path(work_dir) / "baseline" / lang, workers)
        os.remove(encoded)
    return time.perf_counter() - start


def binarize_benchmark_ours(corpus_dir, spm_model, dict_path, work_dir, workers: int = 1,
                            languages: Optional[Sequence[str]] = None) -> float:
    """Wall seconds of `xlmr binarize` (no splits, no dedup: the same work as the baseline)."""
    start = time.perf_counter()
    binarize(corpus_dir=Path(corpus_dir), spm_model=spm_model, dict_path=dict_path,
             dest_dir=Path(work_dir) / "ours", languages=languages, workers=workers, quiet=True,
             overwrite=True)
    return time.perf_counter() - start


def make_synthetic_corpus(directory, megabytes: float, seed: int = 0) -> Path:
    """Zipf-distributed random words in four scripts (Latin en/de, Cyrillic ru, CJK zh), about
    `megabytes` MB in all, with natural-language-like sentence lengths."""
    rng = random.Random(seed)
    alphabets = {"en": "etaoinshrdlucmfwypvbgkjqxz", "de": "enisratdhulcgmobwfkzpvüäößjyxq",
                 "ru": "оеаинтсрвлкмдпуяыьгзбчйхжшюцщэфъё", "zh": None}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for lang, alphabet in alphabets.items():
        if alphabet is None:
            vocab = ["".join(chr(rng.randint(0x4E00, 0x4E00 + 3000)) for _ in range(rng.randint(1, 3)))
                     for _ in range(20000)]
        else:
            vocab = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 10))) for _ in range(20000)]
        weights = [1.0 / (rank + 1) for rank in range(len(vocab))]
        sep = "" if alphabet is None else " "
        budget, lines = int(megabytes * 1e6 / len(alphabets)), []
        while budget > 0:
            words = rng.choices(vocab, weights, k=rng.randint(5, 40))
            line = sep.join(words) + "\n"
            budget -= len(line.encode("utf-8"))
            lines.append(line)
        (directory / f"{lang}.txt").write_text("".join(lines), encoding="utf-8")
    return directory


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus-dir", default=None)
    parser.add_argument("--synthetic", action="store_true", help="ignore /tmp/corpus/mono")
    parser.add_argument("--megabytes", type=float, default=20.0, help="size of the synthetic corpus")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--vocab-size", type=int, default=8000)
    args = parser.parse_args(argv)
    logging.disable(logging.INFO)  # fairseq-preprocess logs every step at INFO
    with tempfile.TemporaryDirectory() as tmp:
        corpus = args.corpus_dir
        if corpus is None and not args.synthetic and Path("/tmp/corpus/mono").is_dir():
            corpus = "/tmp/corpus/mono"
        if corpus is None:
            corpus = make_synthetic_corpus(Path(tmp) / "corpus", args.megabytes)
        size = sum(p.stat().st_size for p in resolve_language_files(Path(corpus), None).values())
        train_spm(corpus_dir=Path(corpus), out_dir=Path(tmp) / "spm", vocab_size=args.vocab_size,
                  sample_sentences=200_000, num_threads=args.workers, quiet=True)
        spm_model, dict_path = Path(tmp) / "spm" / "sentencepiece.bpe.model", Path(tmp) / "spm" / "dict.txt"
        baseline = binarize_benchmark_baseline(corpus, spm_model, dict_path, tmp, args.workers)
        ours = binarize_benchmark_ours(corpus, spm_model, dict_path, tmp, args.workers)
    print(f"binarize {size / 1e6:.1f} MB, workers={args.workers}: baseline {baseline:.1f}s, "
          f"ours {ours:.1f}s, speed-up {baseline / ours:.2f}x")


if __name__ == "__main__":
    main()
