"""Benchmark of `xlmr binarize` against the `spm_encode | fairseq-preprocess` pipeline it replaces.

    .venv/bin/python -m bench.binarize [--corpus-dir DIR] [--megabytes 20] [--workers 2]

Without --corpus-dir it uses a synthetic multilingual corpus of --megabytes MB; `make bench`
(bench/run.py) runs it on the real corpus of `xlmr fetch-corpora`.
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


def run(corpus_dir, work_dir, workers: int = 2, vocab_size: int = 8000) -> dict:
    """Time both pipelines on `corpus_dir` with the same SentencePiece model and workers."""
    logging.disable(logging.INFO)  # fairseq-preprocess logs every step at INFO
    try:
        work_dir = Path(work_dir)
        files = resolve_language_files(Path(corpus_dir), None)
        size = sum(p.stat().st_size for p in files.values())
        train_spm(corpus_dir=Path(corpus_dir), out_dir=work_dir / "spm", vocab_size=vocab_size,
                  sample_sentences=200_000, num_threads=workers, quiet=True)
        spm_model, dict_path = work_dir / "spm" / "sentencepiece.bpe.model", work_dir / "spm" / "dict.txt"
        baseline = binarize_benchmark_baseline(corpus_dir, spm_model, dict_path, work_dir, workers)
        ours = binarize_benchmark_ours(corpus_dir, spm_model, dict_path, work_dir, workers)
    finally:
        logging.disable(logging.NOTSET)
    return {"corpus_mb": size / 1e6, "languages": len(files), "workers": workers,
            "baseline_s": baseline, "ours_s": ours, "speedup": baseline / ours}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus-dir", default=None, help="one <lang>.txt per language (default: synthetic)")
    parser.add_argument("--megabytes", type=float, default=20.0, help="size of the synthetic corpus")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--vocab-size", type=int, default=8000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = args.corpus_dir or make_synthetic_corpus(Path(tmp) / "corpus", args.megabytes)
        r = run(corpus, tmp, args.workers, args.vocab_size)
    print(f"binarize {r['corpus_mb']:.1f} MB, workers={r['workers']}: baseline {r['baseline_s']:.1f}s, "
          f"ours {r['ours_s']:.1f}s, speed-up {r['speedup']:.2f}x")


if __name__ == "__main__":
    main()
