"""`xlmr import-hf`: HF transformers `XLMRoberta*` / `XLMRobertaXL*` models, and BERT-family encoders on
XLM-R's SentencePiece vocabulary (`BertModel`/`BertForMaskedLM`: multilingual-e5, Multilingual-MiniLM; see
`hf_bert`), -> an XLM-R model directory.

Reads the layout `xlmr export-hf` writes: HF_DIR is the encoder (+ LM head) and every subdirectory
holding a config.json is one more head, named after the subdirectory. HF_DIR may also be a single
fine-tuned HF head model; its head is then named `--head-name` and the LM head is freshly
initialised (HF has none to give). Writes OUT_DIR/{model.pt, dict.txt, sentencepiece.bpe.model}.

model.pt is in the layout of the XLM-R releases, so both code bases load it:
- ours: `hub.from_pretrained(OUT_DIR)` (reads every `XlmrEncoderConfig` field from `cfg.model`);
- stock fairseq: `cfg.model` has `_name`/`arch` = `roberta` and the task is `masked_lm`, so
  `XLMRModel.from_pretrained(OUT_DIR)` or `checkpoint_utils.load_model_ensemble_and_task([OUT_DIR/model.pt],
  arg_overrides={"data": OUT_DIR})` build a RobertaModel with the encoder, LM and sentence heads.
  Stock RoBERTa has no token heads: a checkpoint with NER/QA heads needs `strict=False` there.
"""

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import torch

from fairseq_xlmr.files import CHECKPOINT_FILE, DICT_FILE, SPM_FILE, atomic_output_dir, check_output_dir
from fairseq_xlmr.interop import hf_bert
from fairseq_xlmr.interop import hf_mapping as mapping
from fairseq_xlmr.interop.real_vocab import spm_from_tokenizer_json, write_vocab
from fairseq_xlmr.preprocess.spm import FIRST_PIECE_ID

logger = logging.getLogger(__name__)
_EMBEDDING_ROWS = ("encoder.sentence_encoder.embed_tokens.weight", "encoder.lm_head.weight", "encoder.lm_head.bias")


def run(args) -> int:
    heads = import_hf(Path(args.hf_dir), Path(args.out_dir), head_name=args.head_name, overwrite=args.overwrite,
                      sentence_pooling=args.sentence_pooling)
    print(f"wrote {args.out_dir}/{CHECKPOINT_FILE} with heads {heads or 'none'}")
    return 0


def part_of(config, where):
    """The head part (mapping.MLM, ...) of an HF config, from its `architectures`."""
    architectures = getattr(config, "architectures", None) or []
    for part, suffix in mapping.HF_CLASS_SUFFIX.items():
        if any(a.startswith("XLMRoberta") and a.endswith(suffix) for a in architectures):
            return part
    if any(a in ("XLMRobertaModel", "XLMRobertaXLModel") for a in architectures):
        return None  # encoder only
    raise ValueError(f"{where}: architectures {architectures} is not an XLM-R model this importer knows; "
                     f"expected XLMRoberta(XL){{Model,{','.join(mapping.HF_CLASS_SUFFIX.values())}}}.")


def read_vocabulary(hf_dir: Path):
    """(SentencePiece model bytes, dict.txt pieces) of an HF XLM-R directory.

    The .model file is copied as is when present (it is what XLM-R's tokenizer is); tokenizer.json
    gives the piece order HF uses, and a SentencePiece model when there is no .model file.
    """
    from sentencepiece import sentencepiece_model_pb2 as pb

    spm_path, json_path = hf_dir / SPM_FILE, hf_dir / "tokenizer.json"
    if not spm_path.is_file() and not json_path.is_file():
        found = " (it has a WordPiece vocab.txt)" if (hf_dir / "vocab.txt").is_file() else ""
        raise FileNotFoundError(f"{hf_dir} has neither {SPM_FILE} nor tokenizer.json{found}; the "
                                f"vocabulary cannot be rebuilt. {SUPPORTED_VOCABULARIES}")
    from_json = None
    if json_path.is_file():
        with open(json_path, encoding="utf-8") as f:
            tokenizer = json.load(f)
        kind = (tokenizer.get("model") or {}).get("type")
        if kind != "Unigram":
            raise ValueError(f"{json_path} is a {kind} tokenizer. {SUPPORTED_VOCABULARIES}")
        from_json = spm_from_tokenizer_json(tokenizer)
    if not spm_path.is_file():
        return from_json
    spm_model = spm_path.read_bytes()
    proto = pb.ModelProto()
    proto.ParseFromString(spm_model)
    pieces = [p.piece for p in proto.pieces[FIRST_PIECE_ID:]]
    if from_json is not None and from_json[1] != pieces:
        raise ValueError(f"{json_path} and {spm_path} list different pieces (first difference at SPM id "
                         f"{_first_difference(from_json[1], pieces) + FIRST_PIECE_ID}); keep the pair "
                         "that belongs to the model.")
    return spm_model, pieces


SUPPORTED_VOCABULARIES = (
    "fairseq_xlmr tokenises with SentencePiece: it imports models whose vocabulary is a SentencePiece unigram "
    "model in XLM-R's layout (XLM-R, multilingual-e5, Multilingual-MiniLM), not WordPiece (mBERT) or BPE.")


def _first_difference(a, b):
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def _load(hf_dir, part, family):
    import transformers

    class_name = mapping.HF_PREFIX[family] + mapping.HF_CLASS_SUFFIX[part]
    return getattr(transformers, class_name).from_pretrained(str(hf_dir)).state_dict()


def collect_state(hf_dir: Path, head_name=None):
    """(family, our config fields, fairseq state dict, {head: (part, outputs)}) of HF_DIR and its heads."""
    import transformers
    from fairseq.data import Dictionary

    config = transformers.AutoConfig.from_pretrained(str(hf_dir))
    pad = Dictionary().pad()
    if hf_bert.is_bert(config):  # BERT's own pad id only marked its embedding's padding row
        return hf_bert.collect_state(hf_dir, config, pad)
    root_part = part_of(config, hf_dir)
    if config.pad_token_id != pad:
        raise ValueError(f"{hf_dir}: HF `pad_token_id`={config.pad_token_id}, but fairseq's dictionary pads "
                         f"with {pad} and positions count from it; only XLM-R's layout (pad 1) imports.")
    family, fields = mapping.fairseq_model_config(config, pad=pad)
    # The encoder and LM head always come from the root; HF initialises an LM head it lacks.
    if root_part != mapping.MLM:
        logger.warning("%s has no LM head (%s); the imported LM head is freshly initialised",
                       hf_dir, config.architectures)
    state = mapping.to_fairseq(_load(hf_dir, mapping.MLM, family), family, mapping.MLM)
    heads = {}
    sources = [(hf_dir, root_part, head_name or ("qa" if root_part == mapping.QA else "head"))]
    sources += [(d, None, d.name) for d in sorted(hf_dir.iterdir()) if (d / "config.json").is_file()]
    for directory, part, name in sources:
        if directory != hf_dir:
            sub_config = transformers.AutoConfig.from_pretrained(str(directory))
            part = part_of(sub_config, directory)
        if part in (None, mapping.MLM):
            continue
        if "." in name or not name:
            raise ValueError(f"{directory}: head name {name!r} cannot name a fairseq module (no dots); "
                             "rename the directory or pass --head-name.")
        head_state = mapping.to_fairseq(_load(directory, part, family), family, part, head=name)
        for key, value in head_state.items():
            if key in state and not torch.equal(state[key], value):
                raise ValueError(f"{directory}: weight {key} differs from {hf_dir}'s; heads of one fairseq "
                                 "model share its encoder, so this head was fine-tuned separately. Import "
                                 "that directory on its own (xlmr import-hf DIR OUT).")
            state.setdefault(key, value)
        out_key = f"classification_heads.{name}.out_proj.weight" if part == mapping.SENTENCE \
            else f"token_heads.{name}.proj.weight"
        heads[name] = (part, head_state[out_key].shape[0])
    return family, fields, state, heads


def import_hf(hf_dir: Path, out_dir: Path, head_name=None, overwrite=False, sentence_pooling="cls"):
    """Write the fairseq model directory of an HF one; return the imported head names."""
    from fairseq_xlmr.checkpoint import load_dictionary
    from fairseq_xlmr.models.xlmr_encoder import XlmrEncoderModel

    check_output_dir(out_dir, overwrite)
    if not (Path(hf_dir) / "config.json").is_file():
        raise FileNotFoundError(f"{Path(hf_dir) / 'config.json'} not found: HF_DIR must be a local HF model "
                                "directory (config.json, weights, tokenizer files), e.g. written by export-hf.")
    spm_model, pieces = read_vocabulary(Path(hf_dir))
    family, fields, state, heads = collect_state(Path(hf_dir), head_name)
    fields["sentence_pooling"] = sentence_pooling
    with atomic_output_dir(out_dir, overwrite) as tmp:
        write_vocab(tmp, spm_model, pieces)
        dictionary = load_dictionary(str(tmp / DICT_FILE))
        rows = state[_EMBEDDING_ROWS[0]].shape[0]
        if rows < len(dictionary):
            raise ValueError(f"the HF model has {rows} embedding rows but its tokenizer {len(dictionary)} "
                             "entries; the tokenizer files do not belong to this model.")
        if rows > len(dictionary):
            # XL/XXL pad the table to 250,880 rows; no token id reaches the padding rows.
            logger.warning("dropping embedding rows %d..%d that no token id reaches", len(dictionary), rows - 1)
            for key in _EMBEDDING_ROWS:
                if key in state:
                    state[key] = state[key][:len(dictionary)]
        model = XlmrEncoderModel.build_model(SimpleNamespace(**fields), SimpleNamespace(source_dictionary=dictionary))
        state[mapping.FAIRSEQ_VERSION_KEY] = model.state_dict()[mapping.FAIRSEQ_VERSION_KEY]
        for name, (part, outputs) in heads.items():
            if part == mapping.SENTENCE:
                model.register_classification_head(name, num_classes=outputs)
            else:
                model.register_token_head(name, outputs)
        model.load_state_dict(state, strict=True)
        torch.save(checkpoint_state(model, fields), tmp / CHECKPOINT_FILE)
    return sorted(heads)


def checkpoint_state(model, fields):
    """A fairseq checkpoint dict (plain containers only, so `weights_only=True` loads it)."""
    model_cfg = dict(fields, _name="roberta", arch="roberta", load_checkpoint_heads=True,
                     max_source_positions=fields["max_positions"],
                     dictionary_fingerprint=model.args.dictionary_fingerprint)
    return {
        "cfg": {
            "model": model_cfg,
            "task": {"_name": "masked_lm", "data": "."},  # fairseq's hub points `data` at the model dir
            "bpe": {"_name": "sentencepiece", "sentencepiece_model": SPM_FILE},
        },
        "args": None,
        "model": model.state_dict(),
        # What fairseq's checkpoint upgrade expects of a checkpoint that was never trained here.
        "optimizer_history": [{"criterion_name": "MaskedLmLoss", "optimizer_name": None,
                               "lr_scheduler_state": {}, "num_updates": 0}],
        "extra_state": {},
        "last_optimizer_state": None,
    }
