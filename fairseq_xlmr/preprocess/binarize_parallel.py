"""`xlmr binarize --para-dir`: aligned sentence pairs -> fairseq mmap .bin/.idx, for TLM and contrastive alignment.

`<para-dir>/<src>-<tgt>.{<src>,<tgt>}` aligned line by line (as `xlmr fetch-corpora` writes corpus/para/)
become

    <dest>/dict.txt
    <dest>/<src>-<tgt>/{train,valid,test}.{<src>,<tgt>}.{bin,idx}   (item i of both sides: one pair)

A pair is dropped when either side is empty or not valid UTF-8, so the two sides stay aligned; the
split (and `--dedup`) works on pairs, hashed over both sides' ids.

Splits, `--dedup` and `--overwrite` follow binarize.py.
"""

import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from fairseq_xlmr.files import DICT_FILE, temp_dir_beside
from fairseq_xlmr.preprocess.binarize import (
    DROP,
    SPLITS,
    SplitWriter,
    assign_splits,
    build_id_table,
    check_dest_dir,
    check_split_sizes,
    encode_lines,
    held_out_sizes,
    install,
    sentence_hashes,
)
from fairseq_xlmr.preprocess.spm import check_spm_matches_dict, count_lines


def find_pair_files(para_dir: Path, pairs: Optional[Sequence[str]]) -> Dict[str, Tuple[Path, Path]]:
    """Map `src-tgt` -> (source file, target file) in `para_dir`, raising ValueError for what is missing."""
    para_dir = Path(para_dir)
    if not para_dir.is_dir():
        raise ValueError(f"--para-dir {str(para_dir)!r} is not a directory; it must hold aligned "
                         "<src>-<tgt>.<src> and <src>-<tgt>.<tgt> files (`xlmr fetch-corpora` writes corpus/para).")
    if not pairs:
        pairs = sorted({p.stem for p in para_dir.glob("*-*.*") if p.suffix[1:] in p.stem.split("-")})
        if not pairs:
            raise ValueError(f"--para-dir {str(para_dir)!r} holds no <src>-<tgt>.<lang> file.")
    files = {}
    for pair in pairs:
        langs = pair.split("-")
        if len(langs) != 2 or not all(langs) or langs[0] == langs[1]:
            raise ValueError(f"--pairs entry {pair!r} must be `src-tgt` with two different languages, e.g. en-de.")
        paths = tuple(para_dir / f"{pair}.{lang}" for lang in langs)
        for path in paths:
            if not path.is_file() or path.stat().st_size == 0:
                raise ValueError(f"pair {pair!r} needs {str(path)!r}, which is missing or empty; drop the pair "
                                 "or add its aligned file.")
        counts = [count_lines(path) for path in paths]
        if counts[0] != counts[1]:
            raise ValueError(f"pair {pair!r} is not aligned: {paths[0]} has {counts[0]} lines, {paths[1]} has "
                             f"{counts[1]}; line i of one side must translate line i of the other.")
        files[pair] = paths
    return files


def _read_aligned_lines(path: Path) -> List[str]:
    """Every line of a file, a line that is not valid UTF-8 read as "" (dropped later, with its pair)."""
    with open(path, "rb") as f:
        raw = f.read().split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()
    lines = []
    for line in raw:
        try:
            lines.append(line.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError:
            lines.append("")
    return lines


def select_sentences(tokens: np.ndarray, sizes: np.ndarray, keep: np.ndarray):
    """The sentences where `keep` is True. tokens: (sum(sizes),), sizes/keep: (n,). Returns (tokens, sizes)."""
    return tokens[np.repeat(keep, sizes)], sizes[keep]


def binarize_parallel(para_dir: Path, spm_model: Path, dest_dir: Path, dict_path: Optional[Path] = None,
                      pairs: Optional[Sequence[str]] = None, valid_lines: Optional[int] = 0, test_lines: int = 0,
                      dedup: bool = False, overwrite: bool = False, quiet: bool = False) -> Dict[str, Dict[str, int]]:
    """Binarize aligned `<para_dir>/<src>-<tgt>.{src,tgt}` into `dest_dir` (layout in the module docstring).

    Returns per pair the number of pairs read, dropped (empty/invalid side), duplicates and per split.
    """
    import sentencepiece as spm
    from fairseq.data import Dictionary
    from fairseq.data.indexed_dataset import best_fitting_int_dtype
    from tqdm import tqdm

    start_time = time.perf_counter()
    spm_model, dest_dir = Path(spm_model), Path(dest_dir)
    dict_path = Path(dict_path) if dict_path else spm_model.parent / DICT_FILE
    check_split_sizes(valid_lines, test_lines)
    files = find_pair_files(para_dir, pairs)
    for name, path in (("--spm-model", spm_model), ("--dict", dict_path)):
        if not Path(path).is_file():
            raise ValueError(f"{name} {str(path)!r} does not exist; write it with `xlmr train-spm`.")
    check_spm_matches_dict(spm_model, dict_path)
    check_dest_dir(dest_dir, overwrite)
    valid_sizes = held_out_sizes({pair: paths[0] for pair, paths in files.items()}, valid_lines, test_lines, "pair")
    dictionary = Dictionary.load(str(dict_path))
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    id_table = build_id_table(sp, dictionary)
    dtype = best_fitting_int_dtype(len(dictionary))

    tmp = temp_dir_beside(dest_dir)
    summary = {}
    try:
        for pair, paths in tqdm(files.items(), desc="binarize pairs", disable=quiet):
            langs = pair.split("-")
            sides = []
            for path in paths:
                tokens, sizes, keep = encode_lines(sp, id_table, _read_aligned_lines(path), dictionary.eos())
                sides.append((tokens, sizes, keep))
            # Both sides keep exactly the pairs where neither is empty: item i stays a translation pair.
            both = sides[0][2] & sides[1][2]
            selected = [select_sentences(t, s, both[k]) for t, s, k in sides]
            hashes = [sentence_hashes(t, s) for t, s in selected]
            # One hash per pair (odd multiplier: a bijection on uint64, so the order of sides matters).
            with np.errstate(over="ignore"):
                pair_hash = hashes[0] ^ (hashes[1] * np.uint64(0x9E3779B97F4A7C15))
            codes = assign_splits(pair_hash, valid_sizes[pair], test_lines, dedup).astype(np.int64)
            counts = {"lines": int(len(both)), "dropped": int((~both).sum()), "duplicates": int((codes == DROP).sum())}
            for code, split in enumerate(SPLITS):
                if code and not (valid_sizes[pair], test_lines)[code - 1]:
                    continue
                for lang, (tokens, sizes) in zip(langs, selected):
                    writer = SplitWriter(tmp / pair / f"{split}.{lang}", dtype)
                    writer.append(*select_sentences(tokens, sizes, codes == code))
                    writer.close()
                counts[split] = int((codes == code).sum())
            summary[pair] = counts
        shutil.copyfile(dict_path, tmp / DICT_FILE)
        install(tmp, dest_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not quiet:
        for pair, counts in summary.items():
            print(f"{pair:<8}" + "".join(f" {k}={v:,}" for k, v in counts.items()), flush=True)
        print(f"[binarize] wrote {len(summary)} pairs to {dest_dir} in {time.perf_counter() - start_time:.1f}s",
              flush=True)
    return summary
