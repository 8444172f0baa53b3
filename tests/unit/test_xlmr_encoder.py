"""The XLM-R architectures: sizes as published, SDPA attention equal to fairseq's, options."""

import argparse
from types import SimpleNamespace
from unittest import mock

import pytest
import torch
from fairseq.data import Dictionary
from fairseq.models import ARCH_CONFIG_REGISTRY
from fairseq.modules import MultiheadAttention
from fairseq.models.roberta import model as roberta_model

from fairseq_xlmr.models import xlmr_encoder

from fairseq_xlmr.models.xlmr_encoder import XlmrEncoderModel, XlmrSelfAttention


def _dictionary(size):
    """A fairseq Dictionary with exactly `size` entries (4 specials + pieces + <mask>)."""
    d = Dictionary()
    for i in range(size - len(d) - 1):
        d.add_symbol(f"p{i}")
    d.add_symbol("<mask>")
    assert len(d) == size
    return d


def build(arch, vocab=1000, device="cpu", **overrides):
    cfg = argparse.Namespace(**overrides)
    ARCH_CONFIG_REGISTRY[arch](cfg)
    task = SimpleNamespace(source_dictionary=_dictionary(vocab), languages=["en", "de", "ru"])
    if device != "meta":
        return XlmrEncoderModel.build_model(cfg, task)
    # The 10B-parameter presets are counted on the meta device, which holds no values;
    # fairseq's init copies values through the CPU, so it is skipped there.
    with torch.device("meta"), mock.patch.object(roberta_model, "init_bert_params", _no_init), \
            mock.patch.object(xlmr_encoder, "init_bert_params", _no_init):
        return XlmrEncoderModel.build_model(cfg, task)


def _no_init(module):
    pass


def n_params(model):
    return sum(p.numel() for p in model.parameters())  # tied LM head counted once


@pytest.mark.parametrize(
    "arch, vocab, low, high",
    [
        ("xlmr_base", 250_002, 270e6, 285e6),  # paper: ~270M (HF counts 278M with its pooler)
        ("xlmr_large", 250_002, 550e6, 565e6),  # paper: ~550M
        ("xlmr_xl", 250_880, 3.45e9, 3.55e9),  # Goyal et al. 2021: 3.5B
        ("xlmr_xxl", 250_880, 10.6e9, 10.8e9),  # 10.7B
    ],
)
def test_parameter_counts_match_the_papers(arch, vocab, low, high):
    model = build(arch, vocab=vocab, device="meta")
    assert low <= n_params(model) <= high, n_params(model)
    positions = model.encoder.sentence_encoder.embed_positions.weight
    assert positions.shape[0] == 514  # 512 real positions offset by the padding index


def test_base_is_post_layernorm_and_xl_pre_layernorm():
    base, xl = build("xlmr_base", device="meta"), build("xlmr_xl", device="meta")
    assert base.encoder.sentence_encoder.layernorm_embedding is not None
    assert base.encoder.sentence_encoder.layer_norm is None
    assert not base.encoder.sentence_encoder.layers[0].normalize_before
    assert xl.encoder.sentence_encoder.layernorm_embedding is None
    assert xl.encoder.sentence_encoder.layer_norm is not None
    assert xl.encoder.sentence_encoder.layers[0].normalize_before
    assert base.args.activation_fn == "gelu" and base.encoder.sentence_encoder.embed_scale == 1.0


def test_command_line_sizes_override_the_preset():
    model = build("xlmr_large", device="meta", encoder_layers=3)
    assert len(model.encoder.sentence_encoder.layers) == 3
    assert model.encoder.sentence_encoder.embed_tokens.embedding_dim == 1024


@pytest.mark.parametrize("with_padding", [False, True])
def test_sdpa_attention_equals_fairseq_attention(with_padding):
    torch.manual_seed(0)
    ours = XlmrSelfAttention(32, 4, dropout=0.0, self_attention=True).eval()
    stock = MultiheadAttention(32, 4, dropout=0.0, self_attention=True).eval()
    stock.load_state_dict(ours.state_dict())
    x = torch.randn(7, 3, 32)  # (seq_len, batch, dim)
    padding = None
    if with_padding:
        padding = torch.zeros(3, 7, dtype=torch.bool)
        padding[1, 5:] = True
        padding[2, 2:] = True
    expected, _ = stock(x, x, x, key_padding_mask=padding, need_weights=False)
    got, _ = ours(x, x, x, key_padding_mask=padding, need_weights=False)
    rows = ~padding.t() if with_padding else torch.ones(7, 3, dtype=torch.bool)
    assert torch.allclose(got[rows], expected[rows], atol=1e-6)


def test_language_embeddings_change_the_output_only_when_enabled():
    torch.manual_seed(0)
    tokens = torch.randint(4, 900, (2, 9))
    tokens[:, 0] = 0
    plain = build("xlmr_debug").eval()
    out_a, _ = plain(tokens, lang_id=torch.tensor([0, 0]))
    out_b, _ = plain(tokens, lang_id=torch.tensor([1, 2]))
    assert torch.equal(out_a, out_b)  # XLM-R: no language embeddings, lang_id ignored

    with_lang = build("xlmr_debug", language_embeddings=True).eval()
    assert with_lang.encoder.sentence_encoder.embed_languages.weight.shape == (3, 64)
    out_a, _ = with_lang(tokens, lang_id=torch.tensor([0, 0]))
    out_b, _ = with_lang(tokens, lang_id=torch.tensor([1, 2]))
    assert not torch.allclose(out_a, out_b)
    with pytest.raises(ValueError, match="lang_id"):
        with_lang(tokens)


def test_masked_tokens_restrict_the_lm_head_to_masked_positions():
    torch.manual_seed(0)
    model = build("xlmr_debug").eval()
    tokens = torch.randint(4, 900, (2, 9))
    masked = torch.zeros_like(tokens, dtype=torch.bool)
    masked[0, 3] = masked[1, 5] = True
    full, _ = model(tokens)
    only, _ = model(tokens, masked_tokens=masked)
    assert only.shape == (2, 1000)
    assert torch.allclose(only, full[masked], atol=1e-5)


def test_token_heads_give_per_token_logits_and_survive_a_state_dict_round_trip():
    torch.manual_seed(0)
    model = build("xlmr_debug", pooler_dropout=0.0).eval()
    model.register_token_head("ner", 9)
    model.register_token_head("qa", 2)
    model.register_classification_head("xnli", num_classes=3)
    tokens = torch.randint(4, 900, (2, 11))
    ner, _ = model(tokens, token_head_name="ner")
    qa, _ = model(tokens, token_head_name="qa")
    xnli, _ = model(tokens, classification_head_name="xnli")
    assert ner.shape == (2, 11, 9) and qa.shape == (2, 11, 2) and xnli.shape == (2, 3)
    features, _ = model(tokens, features_only=True)
    assert torch.allclose(ner, model.token_heads["ner"].proj(features), atol=1e-6)

    # A model built without heads re-creates them from a checkpoint when asked to.
    fresh = build("xlmr_debug", pooler_dropout=0.0, load_checkpoint_heads=True).eval()
    fresh.load_state_dict(model.state_dict(), strict=True)
    again, _ = fresh(tokens, token_head_name="ner")
    assert torch.equal(again, ner)
    # Without load_checkpoint_heads an unknown head is dropped, not an error.
    plain = build("xlmr_debug")
    plain.load_state_dict(model.state_dict(), strict=True)
    assert "ner" not in plain.token_heads


@pytest.mark.slow
def test_compiled_layers_keep_parameter_names_and_outputs():
    torch.manual_seed(0)
    eager = build("xlmr_debug").eval()
    compiled = build("xlmr_debug", compile_layers=True).eval()
    assert list(compiled.state_dict()) == list(eager.state_dict())  # no `_orig_mod.` prefixes
    compiled.load_state_dict(eager.state_dict())
    tokens = torch.randint(4, 900, (2, 13))
    with torch.no_grad():
        assert torch.allclose(compiled(tokens)[0], eager(tokens)[0], atol=1e-4)
