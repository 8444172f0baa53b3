"""HF transformers BERT (`BertModel`, `BertForMaskedLM`) -> XLM-R's HF layout, for `xlmr import-hf`.

BERT-family encoders trained on XLM-R's SentencePiece vocabulary (multilingual-e5, Multilingual-MiniLM)
are XLM-R's post-LN Transformer under other names. What differs, and how the import handles it:
- key names (`bert.*`, `cls.predictions.*`): renamed by the table below to `XLMRobertaForMaskedLM`'s, which
  `hf_mapping` then maps to fairseq's;
- positions count from 0, XLM-R's from padding_idx + 1 = 2: the table gets pad + 1 leading zero rows
  that no real token reaches, so every real token reads the row it read in BERT;
- token types: only type 0 is used (XLM-R has no segments), and its row is folded into the position
  rows as for XLM-R; type 1 (BERT's second segment) is dropped;
- LayerNorm epsilon 1e-12: carried as `model.layer_norm_eps`;
- no pooler is kept (fairseq has none), and a `BertModel` has no LM head: HF initialises one (BERT
  init, tied to the embeddings), which the import reports.
"""

import logging

import torch

from fairseq_xlmr.interop import hf_mapping as mapping

logger = logging.getLogger(__name__)

ARCHITECTURES = ("BertModel", "BertForMaskedLM")
# (BERT HF key prefix, XLM-R HF key prefix); the encoder's keys below the prefix are the same.
KEY_TABLE = [
    ("bert.", "roberta."),
    ("cls.predictions.transform.dense.", "lm_head.dense."),
    ("cls.predictions.transform.LayerNorm.", "lm_head.layer_norm."),
    ("cls.predictions.decoder.weight", "lm_head.decoder.weight"),
    ("cls.predictions.decoder.bias", "lm_head.decoder.bias"),
    ("cls.predictions.bias", "lm_head.bias"),
]
POSITIONS = "roberta.embeddings.position_embeddings.weight"


def is_bert(config) -> bool:
    return config.model_type == "bert"


def check_architectures(config, where) -> None:
    architectures = getattr(config, "architectures", None) or []
    unknown = [a for a in architectures if a not in ARCHITECTURES]
    if unknown or not architectures:
        raise ValueError(f"{where}: BERT architectures {architectures} cannot be imported; supported: the encoder "
                         f"with or without its LM head ({', '.join(ARCHITECTURES)}). Save the encoder of a fine-tuned "
                         "BERT with `model.bert.save_pretrained(DIR)` and import that.")


def to_xlmr_hf(bert_state, pad: int):
    """The `XLMRobertaForMaskedLM` state dict of a `BertForMaskedLM` one (positions shifted by pad + 1)."""
    out = {}
    for key, value in bert_state.items():
        if key.startswith("bert.pooler."):
            continue
        for bert_prefix, xlmr_prefix in KEY_TABLE:
            if key.startswith(bert_prefix):
                out[xlmr_prefix + key[len(bert_prefix):]] = value
                break
        else:
            raise ValueError(f"BERT weight {key!r} has no XLM-R counterpart; only the encoder and the MLM head "
                             "import.")
    positions = out[POSITIONS]
    out[POSITIONS] = torch.cat([positions.new_zeros(pad + 1, positions.shape[1]), positions])
    return out


def collect_state(hf_dir, config, pad):
    """(family, our config fields, fairseq state dict, no heads) of a BERT directory."""
    import transformers

    check_architectures(config, hf_dir)
    if "BertForMaskedLM" not in config.architectures:
        logger.warning("%s is a %s without an LM head; the imported LM head is freshly initialised (BERT init, "
                       "tied to the embeddings): train it (xlmr_mlm) before using fill-mask or MLM scores",
                       hf_dir, config.architectures[0])
    with torch.random.fork_rng():  # the fresh LM head is the same on every import
        torch.manual_seed(0)
        bert_state = transformers.BertForMaskedLM.from_pretrained(str(hf_dir)).state_dict()
    family, fields = mapping.fairseq_model_config(config, pad)
    fields["max_positions"] = config.max_position_embeddings  # BERT's table has no padding offset
    if config.type_vocab_size > 1:
        logger.info("token type 0 is folded into the positions; type 1 (BERT's second segment) is dropped")
    state = mapping.to_fairseq(to_xlmr_hf(bert_state, pad), family, mapping.MLM)
    return family, fields, state, {}
