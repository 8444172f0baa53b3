"""`xlmr train-spm`: XLM-R's α-sampled SentencePiece unigram vocabulary (Conneau et al., 2020, §3)."""

import io
import itertools
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from fairseq_xlmr.data.language_sampling import sampling_probs
from fairseq_xlmr.files import DICT_FILE, SPM_FILE, write_atomic

# XLM-R keeps SentencePiece's default specials (unk=0, bos=1, eos=2, no pad); fairseq's Dictionary puts
# <s>, <pad>, </s>, <unk> at 0-3, so dict.txt lists SPM ids >= 3 and SPM id k becomes fairseq id k + 1.
SPM_SPECIAL_IDS = {"unk_id": 0, "bos_id": 1, "eos_id": 2, "pad_id": -1}
FIRST_PIECE_ID = 3
_READ_BLOCK = 1 << 20


def run(args) -> int:
    if args.disjoint_vocab:
        train_disjoint_spm(corpus_dir=Path(args.corpus_dir), out_dir=Path(args.out_dir), languages=args.languages,
                           vocab_size=args.vocab_size, character_coverage=args.character_coverage,
                           sample_sentences=args.sample_sentences, seed=args.seed, num_threads=args.num_threads)
        return 0
    train_spm(
        corpus_dir=Path(args.corpus_dir),
        out_dir=Path(args.out_dir),
        languages=args.languages,
        vocab_size=args.vocab_size,
        character_coverage=args.character_coverage,
        sample_sentences=args.sample_sentences,
        alpha=args.alpha,
        seed=args.seed,
        num_threads=args.num_threads,
    )
    return 0


# --------------------------------------------------------------------------- pure helpers


def sample_sizes(counts: Sequence[int], alpha: float, total: int) -> List[int]:
    """Lines to draw per language: round(q_i × total), at least 1 so that every language is seen."""
    q = sampling_probs(counts, alpha)
    return [max(1, int(round(qi * total))) for qi in q]


def sample_line_indices(n_lines: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of `k` lines out of `n_lines`, with repeats when k > n_lines.

    An upsampled language takes every line k // n times and k % n more lines without replacement:
    sampling with replacement, but with the least variance, so no line of a small language is lost.
    """
    repeats, rest = divmod(k, n_lines)
    parts = [np.repeat(np.arange(n_lines, dtype=np.int64), repeats)] if repeats else []
    parts.append(rng.choice(n_lines, size=rest, replace=False).astype(np.int64))
    return np.sort(np.concatenate(parts))


# --------------------------------------------------------------------------- corpus files


def resolve_language_files(corpus_dir: Path, languages: Optional[Sequence[str]]) -> Dict[str, Path]:
    """Map language -> `<corpus_dir>/<lang>.txt`, raising ValueError for a missing dir, file or empty file."""
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise ValueError(f"--corpus-dir {str(corpus_dir)!r} is not a directory; it must hold one "
                         "<lang>.txt per language (write it with `xlmr fetch-corpora`).")
    if not languages:
        languages = sorted(p.stem for p in corpus_dir.glob("*.txt"))
        if not languages:
            raise ValueError(f"--corpus-dir {str(corpus_dir)!r} holds no *.txt file; expected one "
                             "<lang>.txt per language.")
    files = {}
    for lang in languages:
        path = corpus_dir / f"{lang}.txt"
        if not path.is_file():
            raise ValueError(f"--languages names {lang!r} but {str(path)!r} does not exist; "
                             "drop the language or add its text file.")
        if path.stat().st_size == 0:
            raise ValueError(f"{str(path)!r} (language {lang!r}) is empty; drop the language or fill "
                             "the file.")
        files[lang] = path
    return files


def count_lines(path: Path) -> int:
    """Number of lines in a file, the last one counted even without a trailing newline."""
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        while block := f.read(_READ_BLOCK):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


def decode_line(raw: bytes) -> Optional[str]:
    """A raw line without its line ending, decoded as UTF-8; None when it is not valid UTF-8."""
    try:
        return raw.rstrip(b"\r\n").decode("utf-8")
    except UnicodeDecodeError:
        return None


def read_lines_at(path: Path, sorted_indices: np.ndarray):
    """The lines at `sorted_indices` (repeats allowed), plus how many of them were empty or not UTF-8."""
    lines, skipped, j, n = [], 0, 0, len(sorted_indices)
    with open(path, "rb") as f:
        for i, raw in enumerate(f):
            if j == n:
                break
            if sorted_indices[j] != i:
                continue
            text = decode_line(raw)
            while j < n and sorted_indices[j] == i:
                if text is None or not text.strip():
                    skipped += 1
                else:
                    lines.append(text)
                j += 1
    return lines, skipped


# --------------------------------------------------------------------------- dict.txt


def dict_text(pieces: Sequence[str], counts: Sequence[int]) -> str:
    """XLM-R's dict.txt: `<piece> <count>` for SPM ids >= 3, in SPM id order (pieces[k] is SPM id k)."""
    return "".join(f"{pieces[k]} {int(counts[k])}\n" for k in range(FIRST_PIECE_ID, len(pieces)))


def _dict_entry(line: str, dict_path, line_no: int) -> str:
    """The word of one dict.txt line, parsed as fairseq's Dictionary.add_from_file does."""
    if " " not in line.rstrip():
        raise ValueError(f"{str(dict_path)!r} line {line_no} is {line.rstrip()!r}; fairseq's dict.txt needs "
                         "`<piece> <count>` on every line.")
    entry, field = line.rstrip().rsplit(" ", 1)
    if field == "#fairseq:overwrite":
        entry = entry.rsplit(" ", 1)[0]
    return entry


def check_spm_matches_dict(spm_path, dict_path) -> None:
    """Raise ValueError unless dict.txt lists the SPM pieces of ids >= 3 in SPM id order."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(spm_path))
    with open(dict_path, encoding="utf-8") as f:
        dict_pieces = [_dict_entry(line, dict_path, i + 1) for i, line in enumerate(f)]
    expected = sp.get_piece_size() - FIRST_PIECE_ID
    fix = (f"use the {DICT_FILE} written by `xlmr train-spm` together with its {SPM_FILE}, "
           "or regenerate both.")
    if len(dict_pieces) != expected:
        raise ValueError(f"{str(dict_path)!r} has {len(dict_pieces)} entries but {str(spm_path)!r} has "
                         f"{sp.get_piece_size()} pieces; the dict must list SPM ids >= {FIRST_PIECE_ID}, "
                         f"i.e. {expected} entries; {fix}")
    for line_no, piece in enumerate(dict_pieces):
        spm_piece = sp.id_to_piece(line_no + FIRST_PIECE_ID)
        if piece != spm_piece:
            raise ValueError(f"{str(dict_path)!r} line {line_no + 1} is {piece!r} but SPM id "
                             f"{line_no + FIRST_PIECE_ID} of {str(spm_path)!r} is {spm_piece!r}; "
                             f"fairseq id = SPM id + 1 only holds when they agree; {fix}")


# --------------------------------------------------------------------------- training


@dataclass
class SpmSummary:
    languages: List[str]
    line_counts: List[int]  # n_i
    probs: List[float]  # p_i
    sampling_probs: List[float]  # q_i
    sampled: List[int]  # lines used per language (after dropping empty / invalid UTF-8 ones)
    skipped: List[int]  # sampled lines dropped as empty or invalid UTF-8
    vocab_size: int
    seconds: float

    def table(self) -> str:
        rows = [f"{'lang':<8}{'lines':>12}{'p':>9}{'q':>9}{'sampled':>10}{'skipped':>9}"]
        for row in zip(self.languages, self.line_counts, self.probs, self.sampling_probs,
                       self.sampled, self.skipped):
            rows.append("{:<8}{:>12,}{:>9.4f}{:>9.4f}{:>10,}{:>9,}".format(*row))
        rows.append(f"vocab size {self.vocab_size:,} pieces; {sum(self.sampled):,} sentences; "
                    f"{self.seconds:.1f}s")
        return "\n".join(rows)


def _check_options(vocab_size, character_coverage, sample_sentences, alpha, num_threads) -> None:
    if vocab_size <= FIRST_PIECE_ID:
        raise ValueError(f"--vocab-size must be > {FIRST_PIECE_ID} (the specials), got {vocab_size}; "
                         "XLM-R used 250000.")
    if not 0.0 < character_coverage <= 1.0:
        raise ValueError(f"--character-coverage must be in (0, 1], got {character_coverage}; XLM-R-style "
                         "multilingual vocabularies use 0.9995.")
    if sample_sentences < 1:
        raise ValueError(f"--sample-sentences must be >= 1, got {sample_sentences}.")
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"--alpha must be in (0, 1], got {alpha}; XLM-R used 0.3.")
    if num_threads < 1:
        raise ValueError(f"--num-threads must be >= 1, got {num_threads}.")


def _train_model(sentences: List[str], vocab_size: int, character_coverage: float, num_threads: int,
                 quiet: bool) -> bytes:
    """Serialized SentencePiece unigram model; SentencePiece's vocabulary errors become ValueErrors."""
    import sentencepiece as spm

    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=model,
            model_type="unigram",
            vocab_size=vocab_size,
            character_coverage=character_coverage,
            num_threads=num_threads,
            minloglevel=2 if quiet else 1,
            **SPM_SPECIAL_IDS,
        )
    except RuntimeError as err:
        message = str(err)
        too_high = re.search(r"Vocabulary size too high \((\d+)\).*<= (\d+)", message)
        if too_high:
            raise ValueError(f"--vocab-size {too_high.group(1)} is too large for this data: SentencePiece "
                             f"can only build {too_high.group(2)} pieces from the sample; pass "
                             f"--vocab-size {too_high.group(2)} or less, or give it more text "
                             "(--sample-sentences, more corpus).") from err
        too_small = re.search(r"smaller than required_chars\. (\d+) vs (\d+)", message)
        if too_small:
            raise ValueError(f"--vocab-size {too_small.group(1)} is too small: this data needs at least "
                             f"{too_small.group(2)} pieces for its characters; raise --vocab-size or lower "
                             "--character-coverage.") from err
        raise
    return model.getvalue()


def train_spm(corpus_dir: Path, out_dir: Path, languages: Optional[Sequence[str]] = None,
              vocab_size: int = 250000, character_coverage: float = 0.9995,
              sample_sentences: int = 1_000_000, alpha: float = 0.3, seed: int = 1,
              num_threads: int = 1, quiet: bool = False) -> SpmSummary:
    """Train the model on an α-sampled mix of `<corpus_dir>/<lang>.txt` and write model + dict.txt."""
    import sentencepiece as spm

    start = time.perf_counter()
    _check_options(vocab_size, character_coverage, sample_sentences, alpha, num_threads)
    files = resolve_language_files(corpus_dir, languages)
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))

    langs = list(files)
    counts = [count_lines(files[lang]) for lang in langs]
    total = min(sample_sentences, sum(counts))
    sizes = sample_sizes(counts, alpha, total)
    rng = np.random.default_rng(seed)
    sentences, sampled, skipped = [], [], []
    for lang, n, k in zip(langs, counts, sizes):
        say(f"[train-spm] {lang}: sampling {k:,} of {n:,} lines")
        lines, bad = read_lines_at(files[lang], sample_line_indices(n, k, rng))
        sentences.extend(lines)
        sampled.append(len(lines))
        skipped.append(bad)
    if not sentences:
        raise ValueError(f"no usable sentence in {str(corpus_dir)!r}: every sampled line was empty or "
                         "not UTF-8; check the corpus files.")
    # The trainer sees one mixed stream, so no language comes first in its sentence order.
    sentences = [sentences[i] for i in rng.permutation(len(sentences))]

    say(f"[train-spm] training a {vocab_size:,}-piece unigram model on {len(sentences):,} sentences")
    model = _train_model(sentences, vocab_size, character_coverage, num_threads, quiet)
    sp = spm.SentencePieceProcessor(model_proto=model)
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    # Real piece frequencies in the sample (fairseq ignores counts when indexing, but they are informative).
    ids = sp.encode(sentences, out_type=int, num_threads=num_threads)
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=sum(map(len, ids)))
    freq = np.bincount(flat, minlength=len(pieces))

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / SPM_FILE, model)
    write_atomic(out_dir / DICT_FILE, dict_text(pieces, freq))

    p = np.asarray(counts, dtype=np.float64) / sum(counts)
    summary = SpmSummary(langs, counts, p.tolist(), sampling_probs(counts, alpha).tolist(), sampled,
                         skipped, len(pieces), time.perf_counter() - start)
    say(summary.table())
    say(f"[train-spm] wrote {out_dir / SPM_FILE} and {out_dir / DICT_FILE}")
    return summary


# --------------------------------------------------------------------------- disjoint vocabularies

# Ablation "no anchor points" (Conneau, Wu et al., 2020, "Emerging Cross-lingual Structure in Pretrained
# Language Models", §4; K et al., 2020): no sub-word is shared between languages. Each language gets its
# own SentencePiece model, and its pieces enter the shared dict.txt with a language suffix, so "▁a" of
# en and "▁a" of de get two ids. The suffix keeps the "▁" word-start prefix for --mask-whole-words.
DISJOINT_SEPARATOR = "|"  # language codes never contain it, so the last "|" names the language
DISJOINT_MANIFEST = "disjoint_vocab.json"


def disjoint_piece(piece: str, lang: str) -> str:
    """The dict.txt entry of `lang`'s piece: "▁the" of en -> "▁the|en"."""
    return f"{piece}{DISJOINT_SEPARATOR}{lang}"


def disjoint_dict_text(per_language: Dict[str, Sequence[Tuple[str, int]]]) -> str:
    """One dict.txt: each language's (piece, count) entries suffixed, languages one after another,
    so language k's pieces fill one contiguous id range."""
    return "".join(f"{disjoint_piece(piece, lang)} {int(count)}\n"
                   for lang, entries in per_language.items() for piece, count in entries)


def read_dict_entries(dict_path) -> List[Tuple[str, int]]:
    """(piece, count) of every line of a dict.txt written by `xlmr train-spm`."""
    with open(dict_path, encoding="utf-8") as f:
        return [(_dict_entry(line, dict_path, i + 1), int(line.rstrip().rsplit(" ", 1)[1]))
                for i, line in enumerate(f)]


def is_disjoint_vocab(path) -> bool:
    """True for the output directory of `xlmr train-spm --disjoint-vocab`."""
    return Path(path).is_dir() and (Path(path) / DISJOINT_MANIFEST).is_file()


def read_disjoint_manifest(spm_dir) -> Dict[str, Path]:
    """{lang: its SentencePiece model} of a `--disjoint-vocab` directory."""
    import json

    manifest = json.loads((Path(spm_dir) / DISJOINT_MANIFEST).read_text(encoding="utf-8"))
    return {lang: Path(spm_dir) / lang / SPM_FILE for lang in manifest["languages"]}


def train_disjoint_spm(corpus_dir: Path, out_dir: Path, languages: Optional[Sequence[str]] = None,
                       vocab_size: int = 250000, character_coverage: float = 0.9995,
                       sample_sentences: int = 1_000_000, seed: int = 1, num_threads: int = 1,
                       quiet: bool = False) -> Dict[str, SpmSummary]:
    """One unigram model per language, vocab_size // #languages pieces each, in `<out_dir>/<lang>/`
    (with its own dict.txt), plus `<out_dir>/dict.txt` joining them with disjoint ids."""
    import json

    files = resolve_language_files(corpus_dir, languages)
    per_language = vocab_size // len(files)
    if per_language <= FIRST_PIECE_ID:
        raise ValueError(f"--vocab-size {vocab_size} split over {len(files)} languages leaves {per_language} "
                         f"pieces each, not more than the {FIRST_PIECE_ID} specials; raise --vocab-size.")
    summaries, entries = {}, {}
    for lang in files:
        # alpha is irrelevant with one language: every sampled line is this language's.
        summaries[lang] = train_spm(corpus_dir, Path(out_dir) / lang, [lang], per_language, character_coverage,
                                    sample_sentences, 1.0, seed, num_threads, quiet)
        entries[lang] = read_dict_entries(Path(out_dir) / lang / DICT_FILE)
    write_atomic(Path(out_dir) / DICT_FILE, disjoint_dict_text(entries))
    # Written last: its presence marks a complete directory for `xlmr binarize`.
    manifest = {"languages": list(files), "pieces_per_language": per_language, "separator": DISJOINT_SEPARATOR}
    write_atomic(Path(out_dir) / DISJOINT_MANIFEST, json.dumps(manifest, indent=1) + "\n")
    if not quiet:
        print(f"[train-spm] disjoint vocabulary: {len(files)} languages x {per_language:,} pieces; wrote "
              f"{Path(out_dir) / DICT_FILE} ({sum(map(len, entries.values())):,} entries)", flush=True)
    return summaries
