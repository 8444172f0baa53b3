"""Frozen encoder bottoms: no dropout below the trained layers, and cached states that give the outputs,
loss and gradients of recomputing them."""

import argparse
from types import SimpleNamespace

import pytest
import torch
from fairseq.data import Dictionary
from fairseq.models import ARCH_CONFIG_REGISTRY

from fairseq_xlmr.models.xlmr_encoder import XlmrEncoderModel


def tiny_model(seed=0, **options):
    dictionary = Dictionary()
    for i in range(40):
        dictionary.add_symbol(f"w{i}")
    cfg = argparse.Namespace(dropout=0.3, attention_dropout=0.3, encoder_layers=3, **options)
    ARCH_CONFIG_REGISTRY["xlmr_debug"](cfg)
    torch.manual_seed(seed)
    task = SimpleNamespace(source_dictionary=dictionary, languages=["en", "de"])
    model = XlmrEncoderModel.build_model(cfg, task)
    model.register_classification_head("s", num_classes=3)
    return model, dictionary


def right_padded_batch(dictionary, lengths, seed=0):
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.full((len(lengths), max(lengths)), dictionary.pad())
    for row, n in zip(tokens, lengths):
        row[:n] = torch.randint(4, len(dictionary), (n,), generator=generator)
        row[0], row[n - 1] = dictionary.bos(), dictionary.eos()
    return tokens


def loss_and_grads(model, tokens, target):
    model.zero_grad()
    logits = model(tokens, features_only=True, classification_head_name="s")[0]
    loss = torch.nn.functional.cross_entropy(logits, target)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_cached_states_give_the_loss_and_gradients_of_recomputing_them():
    cached, dictionary = tiny_model()
    plain, _ = tiny_model()
    cached.encoder.sentence_encoder.freeze(embeddings=True, layers=2, cache_bytes=2**20)
    plain.encoder.sentence_encoder.freeze(embeddings=True, layers=2, cache_bytes=0)
    target = torch.tensor([0, 2, 1, 1])
    for model in (cached, plain):
        model.train()
        for module in model.modules():  # dropout above the frozen layers off too, to compare exactly
            if module.__class__.__name__ == "FairseqDropout":
                module.p = 0.0
    first = right_padded_batch(dictionary, [5, 9, 3, 7])
    # the same sentences again, in another order and padded to another length, beside a new one
    second = right_padded_batch(dictionary, [5, 9, 3, 11], seed=0)
    second[3] = right_padded_batch(dictionary, [11], seed=7)[0]
    for tokens in (first, second, first):
        loss_cached, grads_cached = loss_and_grads(cached, tokens, target)
        loss_plain, grads_plain = loss_and_grads(plain, tokens, target)
        assert abs(loss_cached - loss_plain) <= 1e-6
        assert sorted(grads_cached) == sorted(grads_plain)
        assert all(torch.allclose(grads_cached[n], grads_plain[n], atol=1e-6) for n in grads_plain)
        assert not any(".layers.0." in n or ".layers.1." in n or "embed_" in n for n in grads_cached)
    assert len(cached.encoder.sentence_encoder.frozen_cache) == 5  # 4 sentences + 1 new, each once


def test_the_cache_is_read_instead_of_recomputed_and_respects_its_budget(monkeypatch):
    model, dictionary = tiny_model()
    encoder = model.encoder.sentence_encoder
    encoder.freeze(embeddings=True, layers=3, cache_bytes=2**20)
    tokens = right_padded_batch(dictionary, [4, 6])
    with torch.no_grad():
        want = model(tokens, features_only=True)[0]
        calls = []
        real = encoder.frozen_bottom
        monkeypatch.setattr(encoder, "frozen_bottom", lambda t: calls.append(t.shape) or real(t))
        again = model(tokens, features_only=True)[0]
    assert calls == [] and torch.allclose(again, want, atol=1e-6)

    small, _ = tiny_model()
    small.encoder.sentence_encoder.freeze(embeddings=True, layers=3, cache_bytes=100)  # less than one sentence
    with torch.no_grad():
        assert torch.allclose(small(tokens, features_only=True)[0], want, atol=1e-6)
    assert len(small.encoder.sentence_encoder.frozen_cache) == 0


def test_frozen_layers_drop_nothing_while_the_layers_above_train_with_dropout():
    model, dictionary = tiny_model()
    encoder = model.encoder.sentence_encoder
    encoder.freeze(embeddings=True, layers=2, cache_bytes=0)
    model.train()
    tokens = right_padded_batch(dictionary, [6, 8])
    with torch.no_grad():
        bottom = [encoder.frozen_bottom(tokens) for _ in range(2)]
        top = [model(tokens, features_only=True)[0] for _ in range(2)]
    assert torch.equal(bottom[0], bottom[1])
    assert not torch.allclose(top[0], top[1])  # layer 2 still drops out
    assert not encoder.layers[0].training and encoder.layers[2].training


def test_language_specific_models_are_refused():
    model, _ = tiny_model(language_specific_layers=1)
    with pytest.raises(ValueError, match="frozen layers read no language ids"):
        model.encoder.sentence_encoder.freeze(embeddings=True, layers=1)
