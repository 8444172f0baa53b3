"""`xlmr binarize`: raw text -> SentencePiece -> fairseq mmap .bin/.idx in one pass over N workers (monolingual
corpora; aligned pairs: binarize_parallel.py; one vocabulary per language: binarize_disjoint.py).

Output is what `fairseq-preprocess --only-source --srcdict dict.txt` writes for the SentencePiece-
encoded text (same ids, same dtype, byte-identical files), minus empty and invalid-UTF-8 lines. (One
deliberate difference: a piece that Python counts as whitespace, such as U+0085, which fairseq's
whitespace split of the encoded text would silently drop, is kept.) Layout:

    <dest>/dict.txt
    <dest>/<lang>/{train,valid,test}.{bin,idx}              (--num-shards 1)
    <dest>/shard{k}/{dict.txt,<lang>/train.*,<lang>/valid.*,<lang>/test.*}   (--num-shards K > 1)

Split policy: valid/test are chosen by a content hash, not by position. Each sentence is hashed
(BLAKE2b of its SentencePiece ids, so lines equal after SentencePiece's normalisation collide); the
`--valid-lines` distinct sentences with the smallest hashes go to valid, the next `--test-lines` to
test, the rest to train, each split keeping file order. The choice is deterministic, independent of
file order and worker count, and every copy of a sentence lands in the same split, so valid/test never
leak into train even without `--dedup` (without it, a split may hold a few more lines than asked).
Without `--valid-lines` the CLI holds out 1% of each language's lines, at least 10 and at most 500
(`default_valid_lines`), since fairseq-train validates on `valid` unless given --disable-validation.
Shards: train is cut into K contiguous, near-equal blocks in file order; valid/test are written to
every shard (identical files), so whichever shard an epoch reads has the same held-out sets.

`--overwrite` replaces only the files named above (from any earlier run, in any mode): other files in
`--dest-dir` (notes, a README, logs) are carried over into the new directory.
"""

import hashlib
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from fairseq_xlmr.files import DICT_FILE, replace_dir, temp_dir_beside
from fairseq_xlmr.preprocess.spm import check_spm_matches_dict, count_lines, resolve_language_files

SPLITS = ("train", "valid", "test")
DROP = -1  # split code of a removed duplicate
# Bytes per work item: bounds worker memory and gives the progress bar a step; any value gives the
# same output, since every per-line decision is made from the line alone or in the parent.
CHUNK_BYTES = 8 << 20
# `--valid-lines` when not given, per language (or pair): 1% of its lines, at least VALID_MIN so the
# validation loss is not noise, at most VALID_MAX so validating a hundred languages stays quick.
VALID_FRACTION, VALID_MIN, VALID_MAX = 0.01, 10, 500
DEFAULT_VALID_RULE = f"{VALID_FRACTION:.0%} of the lines, at least {VALID_MIN}, at most {VALID_MAX}"
# The files `xlmr binarize` writes in --dest-dir, relative to it (all modes, shards included):
# dict.txt, shard<k>/dict.txt, [shard<k>/]<lang>/<split>.{bin,idx}, <src>-<tgt>/<split>.<lang>.{bin,idx}.
OUTPUT_FILE = re.compile(r"(shard\d+/)?(dict\.txt|[^/]+/(train|valid|test)(\.[^./]+)?\.(bin|idx))")


# --------------------------------------------------------------------------- pure helpers


def find_line_offsets(path: Path, num_chunks: int) -> List[int]:
    """`num_chunks + 1` byte offsets cutting the file on line starts (chunks may be empty).

    fairseq's `file_chunker_utils.find_offsets` does the same in text mode, where a line that is not
    valid UTF-8 raises; here the file is read as bytes, so bad lines are counted instead.
    """
    size = os.path.getsize(path)
    offsets = [0] * num_chunks + [size]
    with open(path, "rb") as f:
        for i in range(1, num_chunks):
            f.seek(size * i // num_chunks)
            f.readline()  # move to the start of the next line
            offsets[i] = f.tell()
    return offsets


def split_lines(data: bytes):
    """Decode a chunk of whole lines. Returns (lines, invalid): the valid UTF-8 lines without line
    endings, and the number of lines that were not valid UTF-8."""
    if not data:
        return [], 0
    if data.endswith(b"\n"):
        data = data[:-1]  # the last newline ends a line; it does not start an empty one
    try:
        lines, invalid = data.decode("utf-8").split("\n"), 0  # fast path: the whole chunk is valid
    except UnicodeDecodeError:
        lines, invalid = [], 0
        for raw in data.split(b"\n"):
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                invalid += 1
    if b"\r" in data:
        # Text-mode reading (as fairseq-preprocess does) turns "\r\n" into "\n".
        lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    return lines, invalid


def build_id_table(sp, dictionary) -> np.ndarray:
    """(spm_vocab,) int64 lookup SPM id -> fairseq id, by piece string; pieces absent from dict -> unk.

    For an XLM-R-layout dict this is SPM id + 1 (and SPM's <unk> -> fairseq <unk>); going through the
    piece strings keeps it right for any dict, exactly as `Dictionary.encode_line` on pieces would.
    """
    return np.array([dictionary.index(sp.id_to_piece(i)) for i in range(sp.get_piece_size())],
                    dtype=np.int64)


def encode_lines(sp, id_table: np.ndarray, lines: List[str], eos: int):
    """SentencePiece-encode a batch and map to fairseq ids with </s> appended to every sentence.

    Returns (tokens, sizes, keep): tokens (sum(sizes),) int64, sizes (num_kept,) int64 and keep
    (len(lines),) bool, False for lines without any piece (empty after SentencePiece's
    normalisation): they are dropped, where fairseq-preprocess would store a lone </s>.
    """
    encoded = sp.encode(lines, out_type="numpy", num_threads=1)
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    keep = lengths > 0
    lengths = lengths[keep]
    pieces = np.concatenate(encoded) if encoded else np.empty(0, np.int32)
    sizes = lengths + 1
    tokens = np.empty(int(sizes.sum()), dtype=np.int64)
    is_eos = np.zeros(len(tokens), dtype=bool)
    is_eos[np.cumsum(sizes) - 1] = True
    tokens[is_eos] = eos
    tokens[~is_eos] = id_table[pieces]
    return tokens, sizes, keep


def sentence_hashes(tokens: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """(num_sentences,) uint64 BLAKE2b-64 of each sentence's ids: stable across processes and runs."""
    data = tokens.astype(np.int32).tobytes()
    ends = (np.cumsum(sizes) * 4).tolist()
    starts = [0] + ends[:-1]
    digests = b"".join(hashlib.blake2b(data[s:e], digest_size=8).digest() for s, e in zip(starts, ends))
    return np.frombuffer(digests, dtype=np.uint64)


def assign_splits(hashes: np.ndarray, valid_lines: int, test_lines: int, dedup: bool) -> np.ndarray:
    """(num_sentences,) int8 split code per sentence: 0 train, 1 valid, 2 test, -1 dropped duplicate.

    Distinct sentences are ranked by hash; ranks [0, valid) go to valid, [valid, valid + test) to
    test. Copies share a hash, so they share a split; with `dedup` only the first copy is kept.
    """
    codes = np.zeros(len(hashes), dtype=np.int8)
    if not (dedup or valid_lines or test_lines):
        return codes
    _, first, rank = np.unique(hashes, return_index=True, return_inverse=True)
    codes[rank < valid_lines] = 1
    codes[(rank >= valid_lines) & (rank < valid_lines + test_lines)] = 2
    if dedup:
        is_first = np.zeros(len(hashes), dtype=bool)
        is_first[first] = True
        codes[~is_first] = DROP
    return codes


def shard_ids(num_train: int, num_shards: int) -> np.ndarray:
    """(num_train,) shard of each train sentence: K contiguous near-equal blocks in file order."""
    return (np.arange(num_train, dtype=np.int64) * num_shards // max(num_train, 1)).astype(np.int64)


def default_valid_lines(num_lines: int) -> int:
    """Sentences held out for valid from a language (or pair) of `num_lines` lines without --valid-lines."""
    return min(VALID_MAX, max(VALID_MIN, int(num_lines * VALID_FRACTION)))


def is_output_file(relative_path: str) -> bool:
    """Whether a path inside --dest-dir (POSIX, relative to it) is one `xlmr binarize` writes."""
    return OUTPUT_FILE.fullmatch(relative_path) is not None


# --------------------------------------------------------------------------- workers

_worker = {}  # per-process state: the SentencePiece model and the id table, loaded once


def _init_worker(spm_model: str, id_table: np.ndarray, eos: int, dtype, need_hashes: bool) -> None:
    import sentencepiece as spm

    _worker.update(sp=spm.SentencePieceProcessor(model_file=spm_model), id_table=id_table, eos=eos,
                   dtype=dtype, need_hashes=need_hashes)


@dataclass
class ChunkResult:
    prefix: str  # temp fairseq dataset holding the chunk's non-empty valid lines
    lines: int  # lines read
    sentences: int  # lines written to the temp dataset
    empty: int
    invalid: int
    num_bytes: int
    hashes: Optional[np.ndarray]  # (num_sentences,) uint64, when splits or dedup need them


def _binarize_chunk(task) -> ChunkResult:
    """Worker: one byte range of a language file -> a temp .bin/.idx of its sentences."""
    path, start, end, prefix = task
    from fairseq.data.indexed_dataset import MMapIndexedDataset

    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    lines, invalid = split_lines(data)
    tokens, sizes, keep = encode_lines(_worker["sp"], _worker["id_table"], lines, _worker["eos"])
    hashes = sentence_hashes(tokens, sizes) if _worker["need_hashes"] else None
    with open(prefix + ".bin", "wb") as f:
        f.write(tokens.astype(_worker["dtype"]).tobytes())
    with MMapIndexedDataset.Index.writer(prefix + ".idx", _worker["dtype"]) as index:
        index.write(sizes.tolist())
    return ChunkResult(prefix, len(lines) + invalid, len(sizes), int((~keep).sum()), invalid, len(data),
                       hashes)


# --------------------------------------------------------------------------- output


class SplitWriter:
    """Appends sentences to one fairseq mmap dataset; `close` writes its .idx."""

    def __init__(self, prefix: Path, dtype):
        prefix.parent.mkdir(parents=True, exist_ok=True)
        self.prefix, self.dtype = prefix, dtype
        self.data = open(f"{prefix}.bin", "wb")
        self.sizes: List[int] = []
        self.tokens = 0

    def append(self, tokens: np.ndarray, sizes: np.ndarray) -> None:
        self.data.write(tokens.astype(self.dtype).tobytes())
        # Python ints on purpose: fairseq's Index.writer sums pointers in the sizes' type, and
        # numpy-2 int32 scalars would overflow past 2 GiB of data.
        self.sizes.extend(sizes.tolist())
        self.tokens += len(tokens)

    def close(self) -> None:
        from fairseq.data.indexed_dataset import MMapIndexedDataset

        self.data.close()
        with MMapIndexedDataset.Index.writer(f"{self.prefix}.idx", self.dtype) as index:
            index.write(self.sizes)


def _read_chunk(prefix: str, dtype):
    from fairseq.data.indexed_dataset import MMapIndexedDataset

    index = MMapIndexedDataset.Index(prefix + ".idx")
    sizes = index.sizes.astype(np.int64)  # a copy: `index` unmaps its buffer when collected
    del index
    return np.fromfile(prefix + ".bin", dtype=dtype), sizes


@dataclass
class LanguageSummary:
    lang: str
    lines: int = 0
    empty: int = 0
    invalid: int = 0
    duplicates: int = 0
    tokens: int = 0
    sentences: Dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))

    @property
    def kept(self) -> int:
        return sum(self.sentences.values())


def _write_language(lang: str, chunks: List[ChunkResult], root: Path, dtype, valid_lines: int,
                    test_lines: int, num_shards: int, dedup: bool) -> LanguageSummary:
    """Merge a language's worker outputs in chunk order into its split (and shard) datasets."""
    summary = LanguageSummary(lang)
    for c in chunks:
        summary.lines += c.lines
        summary.empty += c.empty
        summary.invalid += c.invalid
    if chunks[0].hashes is not None:
        codes = assign_splits(np.concatenate([c.hashes for c in chunks]), valid_lines, test_lines, dedup)
    else:
        codes = np.zeros(sum(c.sentences for c in chunks), dtype=np.int8)
    codes = codes.astype(np.int64)
    summary.duplicates = int((codes == DROP).sum())
    num_train = int((codes == 0).sum())
    if num_train < num_shards:
        raise ValueError(
            f"language {lang!r} has {num_train} train sentences left (of {summary.lines} lines: "
            f"{summary.empty} empty, {summary.invalid} invalid UTF-8, {summary.duplicates} duplicates, "
            f"{int((codes > 0).sum())} valid/test), fewer than --num-shards {num_shards}; lower "
            "--valid-lines/--test-lines/--num-shards or add text.")
    # Destination per sentence: 0..K-1 train shard, K valid, K+1 test, -1 dropped.
    dest = np.where(codes == 0, 0, np.where(codes > 0, num_shards + codes - 1, -1)).astype(np.int64)
    dest[codes == 0] = shard_ids(num_train, num_shards)
    shard_dirs = [root] if num_shards == 1 else [root / f"shard{k}" for k in range(num_shards)]
    writers = {k: SplitWriter(shard_dirs[k] / lang / "train", dtype) for k in range(num_shards)}
    for split_code, count in ((1, valid_lines), (2, test_lines)):
        if count:
            writers[num_shards + split_code - 1] = SplitWriter(shard_dirs[0] / lang / SPLITS[split_code],
                                                               dtype)
    start = 0
    for c in chunks:
        tokens, sizes = _read_chunk(c.prefix, dtype)
        chunk_dest = dest[start:start + len(sizes)]
        start += len(sizes)
        token_dest = np.repeat(chunk_dest, sizes)
        for d, writer in writers.items():
            mask = chunk_dest == d
            if mask.any():
                writer.append(tokens[token_dest == d], sizes[mask])
        os.remove(c.prefix + ".bin")
        os.remove(c.prefix + ".idx")
    for d, writer in writers.items():
        writer.close()
        split = SPLITS[0] if d < num_shards else SPLITS[d - num_shards + 1]
        summary.sentences[split] += len(writer.sizes)
        summary.tokens += writer.tokens
    # Held-out sets go to every shard, so each epoch's data dir has the same valid/test.
    for split, count in zip(SPLITS[1:], (valid_lines, test_lines)):
        for shard_dir in shard_dirs[1:] if count else []:
            for ext in ("bin", "idx"):
                shutil.copyfile(shard_dirs[0] / lang / f"{split}.{ext}", shard_dir / lang / f"{split}.{ext}")
    return summary


# --------------------------------------------------------------------------- driver


def check_split_sizes(valid_lines: Optional[int], test_lines: int) -> None:
    for name, value in (("--valid-lines", valid_lines), ("--test-lines", test_lines)):
        if value is not None and value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}.")


def held_out_sizes(files: Dict[str, Path], valid_lines: Optional[int], test_lines: int,
                    unit: str) -> Dict[str, int]:
    """Valid sentences per language (or pair; `unit` says which): `valid_lines`, or when None the
    default for its number of lines. ValueError for one whose lines would leave nothing to train on."""
    if valid_lines == 0 and test_lines == 0:
        return dict.fromkeys(files, 0)
    sizes = {}
    for name, path in files.items():
        n = count_lines(path)
        valid = default_valid_lines(n) if valid_lines is None else valid_lines
        if n <= valid + test_lines:
            if valid_lines is None:
                raise ValueError(f"{unit} {name!r} has {n} lines, not more than the default --valid-lines {valid} "
                                 f"({DEFAULT_VALID_RULE}) + --test-lines {test_lines}; add text, or pass a "
                                 "smaller --valid-lines (0 writes no valid split: then train with "
                                 "--disable-validation).")
            raise ValueError(f"{unit} {name!r} has {n} lines, not more than --valid-lines {valid} + "
                             f"--test-lines {test_lines}; lower them or add text.")
        sizes[name] = valid
    return sizes


def check_dest_dir(dest_dir: Path, overwrite: bool) -> None:
    """--dest-dir must be a directory (or absent), without outputs of an earlier run unless --overwrite."""
    if dest_dir.exists() and not dest_dir.is_dir():
        raise ValueError(f"--dest-dir {str(dest_dir)!r} is a file; choose a directory.")
    if overwrite or not dest_dir.exists():
        return
    ours = [rel for rel, _ in _walk(dest_dir) if is_output_file(rel.as_posix())]
    if ours:
        raise ValueError(f"--dest-dir {str(dest_dir)!r} already holds data of `xlmr binarize` ({len(ours)} files, "
                         f"e.g. {ours[0].as_posix()}); pass --overwrite to replace them (other files there are "
                         "kept) or choose another directory.")


def _walk(root: Path):
    """(path relative to `root`, is an empty directory) for every file, symlink and empty directory
    under `root`; symlinked directories are listed, not entered."""
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        links = [d for d in dirnames if (here / d).is_symlink()]
        dirnames[:] = [d for d in dirnames if d not in links]
        if here != root and not (dirnames or filenames or links):
            yield here.relative_to(root), True
        for name in sorted(filenames + links):
            yield (here / name).relative_to(root), False


def install(tmp: Path, dest_dir: Path) -> None:
    """Make the finished output `tmp` the new `dest_dir`, keeping the files of the old one that
    binarize does not write: they are hard-linked (else copied) into `tmp` first, so the old directory
    stays whole until the swap, and readers see the old or the new one, never a mix."""
    if dest_dir.is_dir():
        for rel, empty_dir in _walk(dest_dir):
            if empty_dir:
                (tmp / rel).mkdir(parents=True, exist_ok=True)
                continue
            if is_output_file(rel.as_posix()):
                continue  # replaced by this run's output, or stale (a language or split no longer written)
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(dest_dir / rel, tmp / rel, follow_symlinks=False)
            except OSError:  # a filesystem without hard links
                shutil.copy2(dest_dir / rel, tmp / rel, follow_symlinks=False)
    replace_dir(tmp, dest_dir)


def _check_options(corpus_dir, spm_model, dict_path, dest_dir, languages, workers, valid_lines,
                   test_lines, num_shards, overwrite) -> Tuple[Dict[str, Path], Dict[str, int]]:
    """Every user mistake as a ValueError before any work; returns the language files and the valid
    sentences of each language."""
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}.")
    if num_shards < 1:
        raise ValueError(f"--num-shards must be >= 1, got {num_shards}.")
    check_split_sizes(valid_lines, test_lines)
    files = resolve_language_files(corpus_dir, languages)
    for name, path in (("--spm-model", spm_model), ("--dict", dict_path)):
        if not Path(path).is_file():
            raise ValueError(f"{name} {str(path)!r} does not exist; write it with `xlmr train-spm`.")
    check_spm_matches_dict(spm_model, dict_path)
    check_dest_dir(Path(dest_dir), overwrite)
    return files, held_out_sizes(files, valid_lines, test_lines, "language")


def _format_summary(summaries: Sequence[LanguageSummary], seconds: float) -> str:
    header = ("lang", "lines", "kept", "empty", "bad-utf8", "dups", "tokens", "train", "valid", "test")
    rows = [header] + [
        (s.lang, s.lines, s.kept, s.empty, s.invalid, s.duplicates, s.tokens, *s.sentences.values())
        for s in summaries
    ]
    lines_total = sum(s.lines for s in summaries)
    tokens_total = sum(s.tokens for s in summaries)
    out = [f"{row[0]:<8}" + "".join(f"{v:>11,}" if isinstance(v, int) else f"{v:>11}" for v in row[1:])
           for row in rows]
    out.append(f"{lines_total:,} lines, {tokens_total:,} tokens in {seconds:.1f}s: "
               f"{lines_total / seconds:,.0f} lines/s, {tokens_total / seconds:,.0f} tokens/s")
    return "\n".join(out)


def binarize(corpus_dir: Path, spm_model: Path, dest_dir: Path, dict_path: Optional[Path] = None,
             languages: Optional[Sequence[str]] = None, workers: int = 1, valid_lines: Optional[int] = 0,
             test_lines: int = 0, num_shards: int = 1, dedup: bool = False, overwrite: bool = False,
             quiet: bool = False) -> List[LanguageSummary]:
    """Binarize `<corpus_dir>/<lang>.txt` into `dest_dir` (layout in the module docstring).

    `valid_lines` None: the CLI's default, `default_valid_lines` of each language's line count.
    """
    import sentencepiece as spm
    from fairseq.data import Dictionary
    from fairseq.data.indexed_dataset import best_fitting_int_dtype
    from tqdm import tqdm

    start_time = time.perf_counter()
    spm_model, dest_dir = Path(spm_model), Path(dest_dir)
    dict_path = Path(dict_path) if dict_path else spm_model.parent / DICT_FILE
    files, valid_sizes = _check_options(corpus_dir, spm_model, dict_path, dest_dir, languages, workers,
                                        valid_lines, test_lines, num_shards, overwrite)
    dictionary = Dictionary.load(str(dict_path))
    id_table = build_id_table(spm.SentencePieceProcessor(model_file=str(spm_model)), dictionary)
    # The dtype fairseq-preprocess picks for this dict, so the files are byte-identical to its output.
    dtype = best_fitting_int_dtype(len(dictionary))

    tmp = temp_dir_beside(dest_dir)
    work = tmp / "_chunks"
    work.mkdir()
    tasks, owner, num_tasks = [], [], {}
    for lang, path in files.items():
        size = os.path.getsize(path)
        num_chunks = max(workers, -(-size // CHUNK_BYTES))
        offsets = find_line_offsets(path, num_chunks)
        for i, (a, b) in enumerate(zip(offsets, offsets[1:])):
            tasks.append((str(path), a, b, str(work / f"{lang}.{i}")))
            owner.append(lang)
        num_tasks[lang] = len(offsets) - 1
    init_args = (str(spm_model), id_table, dictionary.eos(), dtype,
                 bool(dedup or any(valid_sizes.values()) or test_lines))

    summaries, pool = [], None
    try:
        pool = Pool(workers, _init_worker, init_args) if workers > 1 else None
        if pool is None:
            _init_worker(*init_args)
        results = pool.imap(_binarize_chunk, tasks) if pool else map(_binarize_chunk, tasks)
        pending: List[ChunkResult] = []
        bar = None
        for lang, result in zip(owner, results):
            if bar is None:
                bar = tqdm(total=os.path.getsize(files[lang]), desc=f"binarize {lang}", unit="B",
                           unit_scale=True, disable=quiet)
            pending.append(result)
            bar.update(result.num_bytes)
            if len(pending) == num_tasks[lang]:
                bar.close()
                bar = None
                summaries.append(_write_language(lang, pending, tmp, dtype, valid_sizes[lang], test_lines,
                                                 num_shards, dedup))
                pending = []
        if pool is not None:
            pool.close()
            pool.join()
        shutil.rmtree(work)
        dict_dirs = [tmp] + ([tmp / f"shard{k}" for k in range(num_shards)] if num_shards > 1 else [])
        for d in dict_dirs:
            shutil.copyfile(dict_path, d / DICT_FILE)
        install(tmp, dest_dir)
    except BaseException:
        if pool is not None:
            pool.terminate()
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    if not quiet:
        print(_format_summary(summaries, time.perf_counter() - start_time), flush=True)
        print(f"[binarize] wrote {dest_dir}", flush=True)
    return summaries
