"""XLM-R encoder (Conneau et al., 2020; XL/XXL: Goyal et al., 2021) as model `xlmr_encoder`.

fairseq ships the RoBERTa weights layout but no XLM-R architecture. We subclass fairseq's
RoBERTa classes and change only what differs: attention goes through
`torch.nn.functional.scaled_dot_product_attention` (flash/efficient kernels on GPU), the input
can carry optional language embeddings (XLM-style; off, as in XLM-R), and the configuration is
a typed dataclass. Parameter names are fairseq RoBERTa's, so stock fairseq checkpoints, the
2019 XLM-R releases and our own checkpoints load into each other unchanged.
"""

import dataclasses
import functools
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from fairseq import utils
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.dataclass.utils import gen_parser_from_dataclass
from fairseq.models import register_model, register_model_architecture
from fairseq.models.roberta.model import RobertaEncoder, RobertaModel
from fairseq.models.roberta.model import base_architecture as roberta_base_architecture
from fairseq.models.transformer import TransformerConfig, TransformerEncoderBase
from fairseq.modules import MultiheadAttention
from fairseq.modules.checkpoint_activations import checkpoint_wrapper
from fairseq.modules.transformer_layer import TransformerEncoderLayerBase
from fairseq.modules.transformer_sentence_encoder import init_bert_params
from torch import nn

from fairseq_xlmr.modules.frozen_states import FrozenStatesCache
from fairseq_xlmr.modules.packing import PackedTokens

logger = logging.getLogger(__name__)


SENTENCE_POOLING_CHOICES = ChoiceEnum(["cls", "mean"])


@dataclass
class XlmrEncoderConfig(FairseqDataclass):
    # Sizes and LayerNorm placement are None here and come from the architecture preset
    # (xlmr_base, ...). With hydra, fairseq merges these defaults *before* the preset runs, so a
    # concrete default would silently override the preset.
    encoder_layers: Optional[int] = field(default=None, metadata={"help": "Transformer layers (preset)"})
    encoder_embed_dim: Optional[int] = field(default=None, metadata={"help": "hidden size (preset)"})
    encoder_ffn_embed_dim: Optional[int] = field(default=None, metadata={"help": "feed-forward inner size (preset)"})
    encoder_attention_heads: Optional[int] = field(default=None, metadata={"help": "attention heads (preset)"})
    encoder_normalize_before: Optional[bool] = field(
        default=None,
        metadata={"help": "pre-LayerNorm blocks and a final LayerNorm (XL/XXL); base/large are post-LN (preset)"},
    )
    layernorm_embedding: Optional[bool] = field(
        default=None, metadata={"help": "LayerNorm after token+position embeddings (base/large) (preset)"}
    )
    layer_norm_eps: float = field(
        default=1e-5,
        metadata={"help": "epsilon of every LayerNorm: fairseq's and XLM-R's 1e-5; BERT-family models "
                  "(multilingual-e5, Multilingual-MiniLM) were trained with 1e-12"},
    )
    sentence_pooling: SENTENCE_POOLING_CHOICES = field(
        default="cls",
        metadata={"help": "how a sentence vector is read from this encoder: cls (the <s> state, as XLM-R's "
                  "sentence heads read it) or mean (the mean of the non-pad states, as multilingual-e5 was trained); "
                  "sentence classification follows it unless its --pooling says otherwise"},
    )
    dictionary_fingerprint: str = field(
        default="",
        metadata={"help": "sha256 prefix of the dictionary the weights were trained with, recorded when the model "
                  "is built; a checkpoint built again with another dictionary (same size, other pieces) is refused. "
                  "Set by the model, not by users"},
    )
    activation_fn: ChoiceEnum(utils.get_available_activation_fns()) = field(
        default="gelu", metadata={"help": "feed-forward activation"}
    )
    pooler_activation_fn: ChoiceEnum(utils.get_available_activation_fns()) = field(
        default="tanh", metadata={"help": "activation of classification heads"}
    )
    dropout: float = field(default=0.1, metadata={"help": "dropout on embeddings and residual branches"})
    attention_dropout: float = field(default=0.1, metadata={"help": "dropout on attention weights"})
    activation_dropout: float = field(default=0.0, metadata={"help": "dropout after the FFN activation"})
    pooler_dropout: float = field(default=0.0, metadata={"help": "dropout in classification heads"})
    max_positions: int = field(
        default=512, metadata={"help": "longest input in tokens; the table has max_positions + 2 rows (514)"}
    )
    untie_weights_roberta: bool = field(
        default=False, metadata={"help": "untie the LM head projection from the input embeddings"}
    )
    encoder_layerdrop: float = field(default=0.0, metadata={"help": "LayerDrop probability"})
    load_checkpoint_heads: bool = field(
        default=False, metadata={"help": "re-create classification heads found in a loaded checkpoint"}
    )
    bf16_autocast: bool = field(
        default=False,
        metadata={"help": "on CUDA, run the forward under torch.autocast(bfloat16): fp32 weights and "
                  "optimizer, no loss scaling (fairseq's own --bf16 implies --tpu and fails on GPUs)"},
    )
    checkpoint_activations: bool = field(
        default=False,
        metadata={"help": "recompute each Transformer layer's activations in the backward instead of keeping them "
                  "(same gradients, about one more forward of compute); what lets XL/XXL batches fit"},
    )
    offload_activations: bool = field(
        default=False, metadata={"help": "with checkpoint_activations, keep the layers' inputs in CPU memory"}
    )
    compile_layers: bool = field(
        default=False,
        metadata={"help": "torch.compile each Transformer layer in place (fuses LayerNorm/GELU/dropout/"
                  "residual kernels; parameter names unchanged); the first steps pay the compilation"},
    )
    language_embeddings: bool = field(
        default=False,
        metadata={"help": "add a learned per-language embedding to the input (XLM); XLM-R uses none"},
    )
    language_specific_embeddings: bool = field(
        default=False,
        metadata={"help": "ablation 'Sep Emb' (Conneau, Wu et al., 2020): one input token-embedding table per "
                  "language, picked by the sample's lang_id; the LM head keeps the shared table as its output "
                  "projection. Off in XLM-R"},
    )
    language_specific_layers: int = field(
        default=0,
        metadata={"help": "ablation 'Sep L1-K' (Conneau, Wu et al., 2020): the bottom K Transformer layers get "
                  "one copy per language, picked by the sample's lang_id; 0 (XLM-R) shares every layer"},
    )


def dictionary_fingerprint(dictionary) -> str:
    """First 16 hex digits of the sha256 of the dictionary's symbols in id order (specials and <mask> included)."""
    return hashlib.sha256("\n".join(dictionary.symbols).encode("utf-8")).hexdigest()[:16]


def check_dictionary(cfg, dictionary) -> None:
    """Refuse a dictionary that is not the one the weights were trained with; record it when none is."""
    fingerprint = dictionary_fingerprint(dictionary)
    if cfg.dictionary_fingerprint and cfg.dictionary_fingerprint != fingerprint:
        raise ValueError(
            f"the model's weights were trained with the dictionary {cfg.dictionary_fingerprint} "
            f"(`model.dictionary_fingerprint`), but the dict.txt given has {len(dictionary)} entries with fingerprint "
            f"{fingerprint}: another vocabulary, whose ids would read the wrong embedding rows. Use the dict.txt and "
            "sentencepiece.bpe.model that were written with this model.")
    cfg.dictionary_fingerprint = fingerprint


def apply_defaults(cfg):
    """Fill every field the preset and the user left unset from the dataclass defaults."""
    _preset(cfg, **{f.name: f.default for f in dataclasses.fields(XlmrEncoderConfig) if f.default is not None})


class XlmrSelfAttention(MultiheadAttention):
    """fairseq's MultiheadAttention (same parameters) computed with SDPA for self-attention."""

    def forward(self, query, key, value, key_padding_mask=None, need_weights=False, attn_mask=None, **kwargs):
        """query: `(seq_len, batch, embed_dim)`; key_padding_mask: `(batch, seq_len)`, True at padding. Or
        query `(tokens, 1, embed_dim)`, the real tokens packed, with their PackedTokens as key_padding_mask."""
        packed = key_padding_mask if isinstance(key_padding_mask, PackedTokens) else None
        if need_weights or kwargs.get("incremental_state") is not None:
            assert packed is None, "fairseq's attention path takes padded batches"
            return super().forward(
                query, key, value, key_padding_mask=key_padding_mask,
                need_weights=need_weights, attn_mask=attn_mask, **kwargs,
            )
        q, k, v = self.q_proj(query), self.k_proj(query), self.v_proj(query)
        if packed is not None:  # attention itself needs the padded layout
            q, k, v = packed.unpack(q), packed.unpack(k), packed.unpack(v)
            key_padding_mask = packed.padding_mask
        seq_len, batch, embed_dim = q.shape

        def heads(x):  # (seq_len, batch, embed_dim) -> (batch, heads, seq_len, head_dim)
            return x.view(seq_len, batch, self.num_heads, self.head_dim).permute(1, 2, 0, 3)

        q, k, v = heads(q), heads(k), heads(v)
        mask = None
        if key_padding_mask is not None:
            # SDPA's boolean mask means "may attend"; fairseq's means "is padding".
            mask = ~key_padding_mask.bool()[:, None, None, :]
        if attn_mask is not None:  # additive (seq_len, seq_len), already -1e8 where blocked
            additive = attn_mask.to(q.dtype)
            mask = additive if mask is None else additive.masked_fill(~mask, float("-inf"))
        dropout = self.dropout_module.p if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        out = out.permute(2, 0, 1, 3).reshape(seq_len, batch, embed_dim)
        if packed is not None:
            out = packed.pack(out)
        return self.out_proj(out), None


class XlmrEncoderLayer(TransformerEncoderLayerBase):
    def build_self_attention(self, embed_dim, cfg):
        return XlmrSelfAttention(
            embed_dim,
            cfg.encoder.attention_heads,
            dropout=cfg.attention_dropout,
            self_attention=True,
            q_noise=self.quant_noise,
            qn_block_size=self.quant_noise_block_size,
        )


class XlmrSentenceEncoder(TransformerEncoderBase):
    """The Transformer stack with SDPA layers, run on the packed real tokens of padded batches, whose bottom can be
    frozen (and its states cached) for fine-tuning."""

    # Whether `run_layers` may pack a padded batch; layers that route whole samples need the padded layout.
    packable = True

    def __init__(self, cfg, dictionary, embed_tokens):
        super().__init__(cfg, dictionary, embed_tokens)
        self.frozen_layers = 0  # set by `freeze`: the bottom layers that neither train nor drop out
        self.frozen_cache: Optional[FrozenStatesCache] = None

    def freeze(self, embeddings: bool, layers: int, cache_bytes: int = 0) -> None:
        """Stop training the embeddings and the first `layers` layers (all layers: the final LayerNorm too).

        Frozen layers run without dropout, a fixed feature extractor; with `cache_bytes`, each sentence's
        states after them are computed once and kept (FrozenStatesCache), so later passes run only the layers
        above. fairseq's optimizer leaves out the parameters that need no gradient.
        """
        modules = [self.embed_tokens, self.embed_positions] if embeddings or layers else []
        if layers:
            modules += [self.layernorm_embedding, *self.layers[:layers]]
        if layers == len(self.layers):
            modules.append(self.layer_norm)  # the final LayerNorm of pre-LN models
        for module in modules:
            if module is not None:
                module.requires_grad_(False)
        self.frozen_layers = layers
        self.frozen_cache = FrozenStatesCache(cache_bytes) if layers and cache_bytes > 0 else None
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen_layers:  # no dropout below the trained layers, in training as in evaluation
            self.dropout_module.eval()
            for layer in self.layers[:self.frozen_layers]:
                layer.eval()
        return self

    def run_layers(self, x, padding_mask, layers, states=None):
        """x `(seq_len, batch, dim)` through `layers`, callables `layer(x, encoder_padding_mask=...)` (each output
        appended to `states` when given), on the packed real tokens when at least MIN_PADDING_SHARE of the batch is
        padding."""
        has_pads = bool(padding_mask.any())
        if not has_pads or not self.packable or not PackedTokens.worth_it(padding_mask):
            for layer in layers:
                x = layer(x, encoder_padding_mask=padding_mask if has_pads else None)
                if states is not None:
                    states.append(x)
            return x
        packed = PackedTokens(padding_mask)
        x = packed.pack(x)
        for layer in layers:
            x = layer(x, encoder_padding_mask=packed)
            if states is not None:
                states.append(packed.unpack(x))
        return packed.unpack(x)

    def forward_scriptable(self, src_tokens, src_lengths=None, return_all_hiddens=False, token_embeddings=None,
                           layers=None):
        """fairseq's TransformerEncoderBase.forward_scriptable, its layers (default: all of them) run by
        `run_layers`; states at padding positions are zeros when the batch ran packed."""
        padding_mask = src_tokens.eq(self.padding_idx)
        x, embedding = self.forward_embedding(src_tokens, token_embeddings)
        x = (x * (1 - padding_mask.unsqueeze(-1).type_as(x))).transpose(0, 1)
        states = [x] if return_all_hiddens else None
        x = self.run_layers(x, padding_mask, self.layers if layers is None else layers, states)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        lengths = (~padding_mask).sum(dim=1, dtype=torch.int32).reshape(-1, 1)
        return {"encoder_out": [x], "encoder_padding_mask": [padding_mask], "encoder_embedding": [embedding],
                "encoder_states": states or [], "fc_results": [], "src_tokens": [], "src_lengths": [lengths]}

    def frozen_bottom(self, src_tokens):
        """`(seq_len, batch, dim)` states after the frozen layers, computed as forward_scriptable does."""
        padding_mask = src_tokens.eq(self.padding_idx)
        x, _ = self.forward_embedding(src_tokens)
        x = (x * (1 - padding_mask.unsqueeze(-1).type_as(x))).transpose(0, 1)
        return self.run_layers(x, padding_mask, self.layers[:self.frozen_layers])

    def forward_above_frozen(self, src_tokens):
        """forward_scriptable's output, the frozen layers' states taken from the cache where it has them."""
        padding_mask = src_tokens.eq(self.padding_idx)
        right_padded = not (padding_mask[:, :-1] & ~padding_mask[:, 1:]).any()
        with torch.no_grad():
            if self.frozen_cache is not None and right_padded:
                x = self.frozen_cache.lookup(src_tokens, padding_mask, self.frozen_bottom)
            else:
                x = self.frozen_bottom(src_tokens)
        x = self.run_layers(x, padding_mask, self.layers[self.frozen_layers:])
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        lengths = (~padding_mask).sum(dim=1, dtype=torch.int32).reshape(-1, 1)
        return {"encoder_out": [x], "encoder_padding_mask": [padding_mask], "encoder_embedding": [],
                "encoder_states": [], "fc_results": [], "src_tokens": [], "src_lengths": [lengths]}

    def build_encoder_layer(self, cfg):
        layer = XlmrEncoderLayer(cfg)
        if cfg.checkpoint_activations:
            # In place (the layer's forward is replaced), so parameter names stay RoBERTa's.
            layer = checkpoint_wrapper(layer, offload_to_cpu=cfg.offload_activations)
        return layer

    def positioned(self, src_tokens, positions, token_embeddings=None):
        """Token embeddings that give `positions` `(batch, seq_len)` (padding_idx + 1 onwards; TLM restarts them for
        the second segment) instead of the default ones, on top of `token_embeddings` (default: the table's)."""
        # fairseq's forward_embedding always adds the default positions; adding the difference here gives exactly
        # the requested ones (value and gradient) without copying that method.
        shift = F.embedding(positions, self.embed_positions.weight, self.padding_idx) - self.embed_positions(src_tokens)
        base = self.embed_tokens(src_tokens) if token_embeddings is None else token_embeddings
        return base + shift / self.embed_scale

    def forward(self, src_tokens, src_lengths=None, return_all_hiddens=False, positions=None):
        """src_tokens: `(batch, seq_len)`; positions: optional `(batch, seq_len)` position ids (see `positioned`).
        Returns fairseq's encoder_out dict, states `(seq_len, batch, dim)`."""
        if self.frozen_layers and not return_all_hiddens and positions is None:
            return self.forward_above_frozen(src_tokens)
        token_embeddings = None
        if positions is not None and self.embed_positions is not None:
            token_embeddings = self.positioned(src_tokens, positions)
        return self.forward_scriptable(src_tokens, src_lengths, return_all_hiddens, token_embeddings)


class XlmrLanguageSpecificLayer(nn.Module):
    """One copy of a Transformer layer per language; each sample goes through its language's copy."""

    def __init__(self, layers):
        super().__init__()
        self.per_language = nn.ModuleList(layers)

    def forward(self, x, encoder_padding_mask=None, attn_mask=None, lang_id=None):
        """x `(seq_len, batch, dim)`, encoder_padding_mask `(batch, seq_len)`, lang_id `(batch,)` ->
        `(seq_len, batch, dim)`."""
        assert lang_id is not None and lang_id.dim() == 1, "lang_id (batch,) routes the samples"
        out = torch.zeros_like(x)
        for lang in lang_id.unique().tolist():
            rows = lang_id == lang
            mask = encoder_padding_mask[rows] if encoder_padding_mask is not None else None
            out[:, rows] = self.per_language[lang](x[:, rows], encoder_padding_mask=mask, attn_mask=attn_mask)
        return out


class XlmrLanguageSentenceEncoder(XlmrSentenceEncoder):
    """The encoder of `XlmrSentenceEncoder` reading each sample's language: XLM's language embeddings (off in XLM-R)
    and the ablations of "Emerging Cross-lingual Structure" (Conneau, Wu et al., 2020), one token table per language
    ('Sep Emb') or per-language copies of the bottom K layers ('Sep L1-K').

    Built only when one of them is on; the extra parameters sit beside the shared ones (`embed_languages`,
    `embed_tokens_by_language.<lang>`, `layers.<i>.per_language.<lang>`), whose names stay RoBERTa's.
    """

    def __init__(self, cfg, dictionary, embed_tokens, num_languages: int, language_embeddings: bool,
                 specific_embeddings: bool, specific_layers: int):
        super().__init__(cfg, dictionary, embed_tokens)
        dim = embed_tokens.embedding_dim
        self.embed_languages = nn.Embedding(num_languages, dim) if language_embeddings else None
        self.embed_tokens_by_language = None
        if specific_embeddings:
            self.embed_tokens_by_language = nn.ModuleList(
                nn.Embedding(len(dictionary), dim, padding_idx=dictionary.pad()) for _ in range(num_languages))
        for i in range(specific_layers):
            self.layers[i] = XlmrLanguageSpecificLayer([self.build_encoder_layer(cfg) for _ in range(num_languages)])
        self.packable = not specific_layers  # per-language layers route whole samples of the padded batch

    def freeze(self, embeddings: bool, layers: int, cache_bytes: int = 0) -> None:
        if layers:
            raise ValueError("frozen layers read no language ids; fine-tune a model without language embeddings or "
                             "language-specific parts, or freeze no layers.")
        super().freeze(embeddings, layers, cache_bytes)

    def language_specific_embeddings(self, src_tokens, lang_id):
        """`(batch, seq_len)` tokens looked up in their language's table: `(batch, seq_len, dim)`.
        lang_id: `(batch,)` or per token `(batch, seq_len)`."""
        per_token = lang_id if lang_id.dim() == 2 else lang_id[:, None].expand_as(src_tokens)
        tables = self.embed_tokens_by_language
        out = torch.zeros(*src_tokens.shape, tables[0].embedding_dim, dtype=tables[0].weight.dtype,
                          device=src_tokens.device)
        for lang in per_token.unique().tolist():
            where = per_token == lang
            out[where] = tables[lang](src_tokens[where])
        return out

    def forward(self, src_tokens, src_lengths=None, return_all_hiddens=False, positions=None, lang_id=None):
        """As XlmrSentenceEncoder.forward, with lang_id: `(batch,)` or per token `(batch, seq_len)` language index
        (positions in the task's languages)."""
        if lang_id is None:
            raise ValueError("`model.language_embeddings`/`language_specific_embeddings`/`language_specific_layers` "
                             "read each sample's language, but the batch has no `lang_id`; use task xlmr_mlm (it "
                             "adds lang_id to net_input) or turn them off.")
        specific = any(isinstance(layer, XlmrLanguageSpecificLayer) for layer in self.layers)
        if specific and lang_id.dim() != 1:
            raise ValueError("`model.language_specific_layers` routes whole samples, but lang_id is per token "
                             f"{tuple(lang_id.shape)} (TLM pairs mix two languages); use it with MLM batches.")
        token_embeddings = None
        if self.embed_tokens_by_language is not None:
            token_embeddings = self.language_specific_embeddings(src_tokens, lang_id)
        if self.embed_languages is not None:
            # Added before scaling/positions; embed_scale is 1.0 for XLM-R (no_scale_embedding).
            languages = self.embed_languages(lang_id)
            base = self.embed_tokens(src_tokens) if token_embeddings is None else token_embeddings
            token_embeddings = base + (languages[:, None, :] if lang_id.dim() == 1 else languages)
        if positions is not None and self.embed_positions is not None:
            token_embeddings = self.positioned(src_tokens, positions, token_embeddings)
        # The batch's languages go to the per-language layers as an argument of this one pass.
        layers = [functools.partial(layer, lang_id=lang_id) if isinstance(layer, XlmrLanguageSpecificLayer) else layer
                  for layer in self.layers]
        return self.forward_scriptable(src_tokens, src_lengths, return_all_hiddens, token_embeddings, layers)


class XlmrEncoder(RobertaEncoder):
    def __init__(self, cfg, dictionary, num_languages=0):
        self.num_languages = num_languages  # read by build_encoder, called from super().__init__
        super().__init__(cfg, dictionary)

    def build_encoder(self, args, dictionary, embed_tokens):
        cfg = TransformerConfig.from_namespace(args)
        if args.language_embeddings or args.language_specific_embeddings or args.language_specific_layers:
            encoder = XlmrLanguageSentenceEncoder(
                cfg, dictionary, embed_tokens, self.num_languages, args.language_embeddings,
                args.language_specific_embeddings, args.language_specific_layers)
        else:
            encoder = XlmrSentenceEncoder(cfg, dictionary, embed_tokens)
        encoder.apply(init_bert_params)
        if args.compile_layers:
            # In place (nn.Module.compile), unlike torch.compile(module), which would prefix every
            # parameter name with `_orig_mod.` and break the state-dict contract.
            for layer in encoder.layers:
                layer.compile(dynamic=True)
        return encoder

    def forward(self, src_tokens, features_only=False, return_all_hiddens=False, masked_tokens=None,
                lang_id=None, positions=None, **unused):
        """Returns (logits `(batch, seq_len, vocab)` or `(n_masked, vocab)`, {"inner_states"})."""
        x, extra = self.extract_features(src_tokens, return_all_hiddens=return_all_hiddens, lang_id=lang_id,
                                         positions=positions)
        if not features_only:
            x = self.output_layer(x, masked_tokens=masked_tokens)
        return x, extra

    def extract_features(self, src_tokens, return_all_hiddens=False, lang_id=None, positions=None, **unused):
        """lang_id `(batch,)` or `(batch, seq_len)`: read only by an encoder with language-specific parts."""
        languages = {"lang_id": lang_id} if isinstance(self.sentence_encoder, XlmrLanguageSentenceEncoder) else {}
        encoder_out = self.sentence_encoder(src_tokens, return_all_hiddens=return_all_hiddens, positions=positions,
                                            **languages)
        features = encoder_out["encoder_out"][0].transpose(0, 1)  # (batch, seq_len, dim)
        inner_states = encoder_out["encoder_states"] if return_all_hiddens else None
        return features, {"inner_states": inner_states}


class XlmrTokenHead(nn.Module):
    """A linear layer on every token's final state: NER/POS labels, or QA start/end logits."""

    def __init__(self, embed_dim, num_outputs, dropout):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        self.proj = nn.Linear(embed_dim, num_outputs)

    def forward(self, features):
        """features `(batch, seq_len, dim)` -> `(batch, seq_len, num_outputs)`."""
        return self.proj(self.dropout(features))


@register_model("xlmr_encoder", dataclass=XlmrEncoderConfig)
class XlmrEncoderModel(RobertaModel):
    """RobertaModel with the XLM-R architectures and per-token heads.

    Sentence heads (`classification_heads`, on `<s>`), forward and the 2019 key upgrades are
    RoBERTa's; `token_heads` add what NER/POS tagging and span QA need.
    """

    def __init__(self, args, encoder):
        super().__init__(args, encoder)
        self.token_heads = nn.ModuleDict()
        self.num_updates = 0

    def set_num_updates(self, num_updates):
        """fairseq's task calls this before every training forward, and the trainer on resume; criteria with
        a schedule (alignment weights, adversarial λ) read `model.num_updates`, since fairseq never passes
        the update number to a criterion."""
        super().set_num_updates(num_updates)
        self.num_updates = num_updates

    @classmethod
    def add_args(cls, parser):
        # RobertaModel replaces fairseq's dataclass-driven add_args with its own legacy flag
        # list; ours come from XlmrEncoderConfig. No defaults here, so presets can fill them.
        gen_parser_from_dataclass(parser, XlmrEncoderConfig(), delete_default=True)

    def sharding_units(self):
        """The modules that fully sharded training shards one by one: each Transformer layer (a language-specific
        layer with all its copies); the embeddings, the final LayerNorm and the heads stay in the root unit."""
        return list(self.encoder.sentence_encoder.layers)

    def register_token_head(self, name, num_outputs, dropout=None):
        """Add (or replace) a per-token head; num_outputs = labels (tagging) or 2 (QA start/end)."""
        dropout = self.args.pooler_dropout if dropout is None else dropout
        self.token_heads[name] = XlmrTokenHead(self.args.encoder_embed_dim, num_outputs, dropout)

    def forward(self, src_tokens, features_only=False, return_all_hiddens=False,
                classification_head_name=None, token_head_name=None, **kwargs):
        """With `token_head_name`, returns `(batch, seq_len, num_outputs)` logits of that head."""
        autocast = self.args.bf16_autocast and src_tokens.is_cuda
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            return self._forward(src_tokens, features_only, return_all_hiddens, classification_head_name,
                                 token_head_name, **kwargs)

    def _forward(self, src_tokens, features_only, return_all_hiddens, classification_head_name,
                 token_head_name, **kwargs):
        if token_head_name is None:
            return super().forward(src_tokens, features_only, return_all_hiddens, classification_head_name, **kwargs)
        features, extra = self.encoder(src_tokens, features_only=True, return_all_hiddens=return_all_hiddens, **kwargs)
        return self.token_heads[token_head_name](features), extra

    def upgrade_state_dict_named(self, state_dict, name):
        super().upgrade_state_dict_named(state_dict, name)
        prefix = (name + "." if name else "") + "token_heads."
        for key in [k for k in state_dict if k.startswith(prefix) and k.endswith(".proj.weight")]:
            head = key[len(prefix):-len(".proj.weight")]
            num_outputs = state_dict[key].size(0)
            current = self.token_heads[head].proj.out_features if head in self.token_heads else None
            if current == num_outputs:
                continue
            if self.args.load_checkpoint_heads:
                self.register_token_head(head, num_outputs)
            else:  # as RoBERTa does for sentence heads: drop heads the model was not built with
                logger.warning("dropping token head %s (%d outputs) from the checkpoint", head, num_outputs)
                for k in [k for k in state_dict if k.startswith(f"{prefix}{head}.")]:
                    del state_dict[k]
        # Heads registered on the model but absent from the checkpoint keep their fresh weights.
        for key, value in self.token_heads.state_dict().items():
            state_dict.setdefault(prefix + key, value)

    @classmethod
    def build_model(cls, cfg, task):
        from omegaconf import OmegaConf

        if OmegaConf.is_config(cfg):
            OmegaConf.set_struct(cfg, False)
        xlmr_base(cfg)  # `_name: xlmr_encoder` without a preset means base sizes
        # fairseq's TransformerConfig reads legacy RoBERTa fields (learned positions, no
        # embedding scaling, ...); RoBERTa's preset fills those we do not expose.
        roberta_base_architecture(cfg)
        num_languages = 0
        check_language_specific(cfg)
        check_dictionary(cfg, task.source_dictionary)
        if cfg.language_embeddings or cfg.language_specific_embeddings or cfg.language_specific_layers:
            languages = getattr(task, "languages", None)
            if not languages:
                raise ValueError(
                    f"`model.language_embeddings` (or language_specific_embeddings/_layers) needs a task that "
                    f"names its languages; task {type(task).__name__} has none. Use --task xlmr_mlm or turn "
                    "the option off."
                )
            num_languages = len(languages)
        encoder = XlmrEncoder(cfg, task.source_dictionary, num_languages)
        # fairseq builds every LayerNorm (torch's or apex's fused one) with its fixed 1e-5; the epsilon is
        # not a parameter, so setting it afterwards leaves the state dict (the contract) unchanged.
        for module in encoder.modules():
            if hasattr(module, "normalized_shape") and hasattr(module, "eps"):
                module.eps = cfg.layer_norm_eps
        if OmegaConf.is_config(cfg):
            OmegaConf.set_struct(cfg, True)
        return cls(cfg, encoder)


def check_language_specific(cfg):
    """Reject a `language_specific_layers` the model cannot have, before anything is built."""
    if not 0 <= cfg.language_specific_layers <= cfg.encoder_layers:
        raise ValueError(f"`model.language_specific_layers` must be in [0, encoder_layers={cfg.encoder_layers}], "
                         f"got {cfg.language_specific_layers}; the paper's 'Sep L1-3' is 3.")


def _preset(cfg, **values):
    """Set each value the user did not give on the command line or in YAML."""
    for name, value in values.items():
        if getattr(cfg, name, None) is None:
            setattr(cfg, name, value)


# Presets set sizes only, then call the base, which fills the rest from XlmrEncoderConfig.
@register_model_architecture("xlmr_encoder", "xlmr_base")
def xlmr_base(cfg):
    _preset(cfg, encoder_layers=12, encoder_embed_dim=768, encoder_ffn_embed_dim=3072, encoder_attention_heads=12,
            encoder_normalize_before=False, layernorm_embedding=True)
    apply_defaults(cfg)


@register_model_architecture("xlmr_encoder", "xlmr_debug")
def xlmr_debug(cfg):
    """Tiny model every CPU test uses."""
    _preset(cfg, encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=128, encoder_attention_heads=4)
    xlmr_base(cfg)


@register_model_architecture("xlmr_encoder", "xlmr_large")
def xlmr_large(cfg):
    _preset(cfg, encoder_layers=24, encoder_embed_dim=1024, encoder_ffn_embed_dim=4096, encoder_attention_heads=16)
    xlmr_base(cfg)


# XL/XXL (Goyal et al., 2021): pre-LayerNorm blocks, a final LayerNorm, no embedding LayerNorm.
@register_model_architecture("xlmr_encoder", "xlmr_xl")
def xlmr_xl(cfg):
    _preset(cfg, encoder_layers=36, encoder_embed_dim=2560, encoder_ffn_embed_dim=10240, encoder_attention_heads=32,
            encoder_normalize_before=True, layernorm_embedding=False)
    xlmr_base(cfg)


@register_model_architecture("xlmr_encoder", "xlmr_xxl")
def xlmr_xxl(cfg):
    _preset(cfg, encoder_layers=48, encoder_embed_dim=4096, encoder_ffn_embed_dim=16384, encoder_attention_heads=32,
            encoder_normalize_before=True, layernorm_embedding=False)
    xlmr_base(cfg)
