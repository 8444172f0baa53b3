"""The fairseq XLM-R <-> HF transformers `XLMRoberta*` / `XLMRobertaXL*` key and config mapping.

One table, read left to right by `xlmr export-hf` and right to left by `xlmr import-hf`. A fairseq
model with several heads becomes several HF models (HF has one head per model): each is the shared
encoder rows, the rows of its LayerNorm family, and the rows of one head part.
"""

import re

import torch

# Families: base/large are post-LN (`XLMRoberta*`); XL/XXL are pre-LN (`XLMRobertaXL*`).
POST_LN, PRE_LN = "post_ln", "pre_ln"
# Head parts, and the HF class suffix of each.
MLM, SENTENCE, TOKEN, QA = "mlm", "sentence", "token", "qa"
HF_CLASS_SUFFIX = {
    MLM: "ForMaskedLM",
    SENTENCE: "ForSequenceClassification",
    TOKEN: "ForTokenClassification",
    QA: "ForQuestionAnswering",
}
HF_PREFIX = {POST_LN: "XLMRoberta", PRE_LN: "XLMRobertaXL"}

_L = "encoder.sentence_encoder.layers.{n}."
_H = "roberta.encoder.layer.{n}."
# (part, fairseq key pattern, HF key pattern); {n} = layer, {p} = weight|bias, {h} = head name
# (fairseq only: each HF model carries one head, under a fixed name).
KEY_TABLE = [
    ("encoder", "encoder.sentence_encoder.embed_tokens.weight", "roberta.embeddings.word_embeddings.weight"),
    ("encoder", "encoder.sentence_encoder.embed_positions.weight", "roberta.embeddings.position_embeddings.weight"),
    ("encoder", _L + "self_attn.q_proj.{p}", _H + "attention.self.query.{p}"),
    ("encoder", _L + "self_attn.k_proj.{p}", _H + "attention.self.key.{p}"),
    ("encoder", _L + "self_attn.v_proj.{p}", _H + "attention.self.value.{p}"),
    ("encoder", _L + "self_attn.out_proj.{p}", _H + "attention.output.dense.{p}"),
    ("encoder", _L + "fc1.{p}", _H + "intermediate.dense.{p}"),
    ("encoder", _L + "fc2.{p}", _H + "output.dense.{p}"),
    (POST_LN, "encoder.sentence_encoder.layernorm_embedding.{p}", "roberta.embeddings.LayerNorm.{p}"),
    (POST_LN, _L + "self_attn_layer_norm.{p}", _H + "attention.output.LayerNorm.{p}"),
    (POST_LN, _L + "final_layer_norm.{p}", _H + "output.LayerNorm.{p}"),
    (PRE_LN, _L + "self_attn_layer_norm.{p}", _H + "attention.self_attn_layer_norm.{p}"),
    (PRE_LN, _L + "final_layer_norm.{p}", _H + "LayerNorm.{p}"),
    (PRE_LN, "encoder.sentence_encoder.layer_norm.{p}", "roberta.encoder.LayerNorm.{p}"),
    (MLM, "encoder.lm_head.dense.{p}", "lm_head.dense.{p}"),
    (MLM, "encoder.lm_head.layer_norm.{p}", "lm_head.layer_norm.{p}"),
    (MLM, "encoder.lm_head.weight", "lm_head.decoder.weight"),
    (MLM, "encoder.lm_head.bias", "lm_head.bias"),
    (SENTENCE, "classification_heads.{h}.dense.{p}", "classifier.dense.{p}"),
    (SENTENCE, "classification_heads.{h}.out_proj.{p}", "classifier.out_proj.{p}"),
    (TOKEN, "token_heads.{h}.proj.{p}", "classifier.{p}"),
    (QA, "token_heads.{h}.proj.{p}", "qa_outputs.{p}"),
]
# fairseq's format-version buffer of TransformerEncoderBase: no weight, no HF counterpart.
FAIRSEQ_VERSION_KEY = "encoder.sentence_encoder.version"
# HF keys without a fairseq counterpart. The decoder bias is the LM bias under a second name;
# token types are always 0 in XLM-R, so the single row is a constant added to every position.
HF_DECODER_BIAS = "lm_head.decoder.bias"
HF_TOKEN_TYPES = "roberta.embeddings.token_type_embeddings.weight"
HF_IGNORED = re.compile(r"roberta\.(pooler\..*|embeddings\.position_ids|embeddings\.token_type_ids)")

_GROUPS = {"n": r"(?P<n>\d+)", "p": r"(?P<p>weight|bias)", "h": r"(?P<h>[^.]+)"}


def _regex(pattern):
    escaped = re.escape(pattern)
    for name, group in _GROUPS.items():
        escaped = escaped.replace(re.escape("{" + name + "}"), group)
    return re.compile(escaped)


_ROWS = [(part, _regex(fs), fs, _regex(hf), hf) for part, fs, hf in KEY_TABLE]


def _rows(family, part):
    return [row for row in _ROWS if row[0] in ("encoder", family, part)]


def to_hf(state, family, part, head=None):
    """The HF state dict of one HF model: the encoder plus the head `part` (named `head` in `state`).

    Keys of other heads are skipped. Adds the HF-only keys (zero token types, decoder bias alias).
    """
    out = {}
    for key, value in state.items():
        for _, fs_re, _, _, hf_pattern in _rows(family, part):
            match = fs_re.fullmatch(key)
            if match and match.groupdict().get("h", head) == head:
                out[hf_pattern.format(**match.groupdict())] = value
                break
    positions = state["encoder.sentence_encoder.embed_positions.weight"]
    out[HF_TOKEN_TYPES] = torch.zeros(1, positions.shape[1], dtype=positions.dtype)
    if part == MLM:
        out[HF_DECODER_BIAS] = out["lm_head.bias"]
    return out


def unmapped_fairseq_keys(state, family):
    """Keys of a fairseq state dict that no HF model of `family` can hold (e.g. language embeddings)."""
    regexes = [fs_re for part, fs_re, _, _, _ in _ROWS if part not in (POST_LN, PRE_LN) or part == family]
    return [k for k in state if k != FAIRSEQ_VERSION_KEY and not any(r.fullmatch(k) for r in regexes)]


def to_fairseq(hf_state, family, part, head=None):
    """The fairseq keys of one HF model's state dict; the head comes back under the name `head`.

    The token-type row (a constant, as XLM-R only uses type 0) is folded into every position row,
    which leaves every output unchanged; the pooler and other HF-only keys are dropped.
    """
    hf_state = dict(hf_state)
    token_types = hf_state.pop(HF_TOKEN_TYPES, None)
    decoder_bias = hf_state.pop(HF_DECODER_BIAS, None)
    if decoder_bias is not None and "lm_head.bias" in hf_state:
        assert torch.equal(decoder_bias, hf_state["lm_head.bias"]), "HF ties lm_head.bias to the decoder bias"
    out, unknown = {}, []
    for key, value in hf_state.items():
        if HF_IGNORED.fullmatch(key):
            continue
        for _, _, fs_pattern, hf_re, _ in _rows(family, part):
            match = hf_re.fullmatch(key)
            if match:
                out[fs_pattern.format(h=head, **match.groupdict())] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(
            f"HF weights {unknown[:5]} have no fairseq counterpart in a {HF_PREFIX[family]}"
            f"{HF_CLASS_SUFFIX[part]} model; only the XLM-R encoder and the heads "
            f"{sorted(HF_CLASS_SUFFIX.values())} can be imported."
        )
    if token_types is not None and token_types[0].any():
        key = "encoder.sentence_encoder.embed_positions.weight"
        out[key] = out[key] + token_types[0]
    return out


def family_of(cfg):
    """POST_LN or PRE_LN for a fairseq model config; the other two LayerNorm layouts have no HF class."""
    if not cfg.encoder_normalize_before and cfg.layernorm_embedding:
        return POST_LN
    if cfg.encoder_normalize_before and not cfg.layernorm_embedding:
        return PRE_LN
    raise ValueError(
        f"`model.encoder_normalize_before`={cfg.encoder_normalize_before} with "
        f"`model.layernorm_embedding`={cfg.layernorm_embedding} has no HF counterpart: HF's XLMRoberta "
        "is post-LN with an embedding LayerNorm (xlmr_base/large), XLMRobertaXL pre-LN without one "
        "(xlmr_xl/xxl). Export only models built with one of those two layouts."
    )


# fairseq activation name -> HF ACT2FN name of the same function (gelu_accurate is the tanh form).
ACTIVATIONS = {"gelu": "gelu", "gelu_accurate": "gelu_new", "relu": "relu", "tanh": "tanh", "linear": "linear"}


def hf_config(cfg, family, dictionary, positions, num_labels=None):
    """HF config of an exported model. `positions` = rows of the position table (514 for 512)."""
    import transformers

    if cfg.activation_fn not in ACTIVATIONS:
        raise ValueError(f"`model.activation_fn`={cfg.activation_fn!r} has no HF counterpart; "
                         f"supported: {sorted(ACTIVATIONS)}.")
    if cfg.pooler_activation_fn != "tanh":
        raise ValueError(f"`model.pooler_activation_fn`={cfg.pooler_activation_fn!r}: HF's "
                         "classification head is fixed to tanh, so only tanh heads export exactly.")
    config_class = transformers.XLMRobertaConfig if family == POST_LN else transformers.XLMRobertaXLConfig
    extra = {"num_labels": num_labels} if num_labels is not None else {}
    return config_class(
        vocab_size=len(dictionary),
        hidden_size=cfg.encoder_embed_dim,
        num_hidden_layers=cfg.encoder_layers,
        num_attention_heads=cfg.encoder_attention_heads,
        intermediate_size=cfg.encoder_ffn_embed_dim,
        hidden_act=ACTIVATIONS[cfg.activation_fn],
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.attention_dropout,
        classifier_dropout=cfg.pooler_dropout,
        max_position_embeddings=positions,
        type_vocab_size=1,
        # XLM-R's 1e-5 (HF's class default 1e-12 is wrong for it); 1e-12 for models imported from BERT.
        layer_norm_eps=getattr(cfg, "layer_norm_eps", 1e-5),
        pad_token_id=dictionary.pad(),
        bos_token_id=dictionary.bos(),
        eos_token_id=dictionary.eos(),
        tie_word_embeddings=not cfg.untie_weights_roberta,
        **extra,
    )


def fairseq_model_config(config, pad):
    """Our XlmrEncoderConfig fields from an HF config (`pad` = the padding id of the dictionary)."""
    family = PRE_LN if config.model_type == "xlm-roberta-xl" else POST_LN
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"HF `position_embedding_type`={config.position_embedding_type!r}: XLM-R (and "
                         "fairseq's learned positions) are 'absolute'.")
    inverse = {hf: fs for fs, hf in ACTIVATIONS.items()}
    if config.hidden_act not in inverse:
        raise ValueError(f"HF `hidden_act`={config.hidden_act!r} has no fairseq counterpart; "
                         f"supported: {sorted(inverse)}.")
    dropout = config.classifier_dropout
    return family, dict(
        encoder_layers=config.num_hidden_layers,
        encoder_embed_dim=config.hidden_size,
        encoder_ffn_embed_dim=config.intermediate_size,
        encoder_attention_heads=config.num_attention_heads,
        encoder_normalize_before=family == PRE_LN,
        layernorm_embedding=family == POST_LN,
        activation_fn=inverse[config.hidden_act],
        pooler_activation_fn="tanh",
        dropout=config.hidden_dropout_prob,
        attention_dropout=config.attention_probs_dropout_prob,
        pooler_dropout=config.hidden_dropout_prob if dropout is None else dropout,
        # fairseq's table has max_positions + pad + 1 rows (positions count from pad + 1).
        max_positions=config.max_position_embeddings - pad - 1,
        untie_weights_roberta=not config.tie_word_embeddings,
        layer_norm_eps=config.layer_norm_eps,
    )
