"""Layers on the packed real tokens give the padded computation's states, loss and gradients."""

import pytest
import torch

from fairseq_xlmr.modules import packing
from tests.unit.test_frozen_states import loss_and_grads, right_padded_batch, tiny_model


@pytest.mark.parametrize("options", [{}, {"encoder_normalize_before": True, "layernorm_embedding": False}])
def test_packed_layers_match_the_padded_ones(options, monkeypatch):
    model, dictionary = tiny_model(**options)
    model.train()
    for module in model.modules():  # the two runs must draw no different dropout masks
        if module.__class__.__name__ == "FairseqDropout":
            module.p = 0.0
    tokens = right_padded_batch(dictionary, [3, 12, 5, 7, 2, 9])  # 38 % padding
    assert packing.PackedTokens.worth_it(tokens.eq(dictionary.pad()))
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    calls = []
    real = packing.PackedTokens.pack
    monkeypatch.setattr(packing.PackedTokens, "pack", lambda self, x: calls.append(1) or real(self, x))
    packed_states = model(tokens, features_only=True, return_all_hiddens=True)[1]["inner_states"]
    packed_loss, packed_grads = loss_and_grads(model, tokens, target)
    assert calls  # the packed path ran
    monkeypatch.setattr(packing, "MIN_PADDING_SHARE", 2.0)  # never worth it: the padded path
    calls.clear()
    padded_states = model(tokens, features_only=True, return_all_hiddens=True)[1]["inner_states"]
    padded_loss, padded_grads = loss_and_grads(model, tokens, target)
    assert not calls
    real_tokens = tokens.ne(dictionary.pad()).t()  # (seq_len, batch)
    for packed_state, padded_state in zip(packed_states, padded_states):
        assert torch.allclose(packed_state[real_tokens], padded_state[real_tokens], atol=1e-5)
        assert not packed_state[~real_tokens].any()  # zeros at padding
    assert abs(packed_loss - padded_loss) <= 1e-5
    assert sorted(packed_grads) == sorted(padded_grads)
    assert all(torch.allclose(packed_grads[n], padded_grads[n], atol=1e-5) for n in padded_grads)


def test_pack_and_unpack_are_inverse_on_real_tokens():
    mask = torch.tensor([[False, False, True, True], [False, False, False, False], [False, True, True, True]])
    packed = packing.PackedTokens(mask)
    x = torch.arange(4 * 3 * 2, dtype=torch.float).view(4, 3, 2)  # (seq_len, batch, dim)
    flat = packed.pack(x)
    assert flat.shape == (7, 1, 2)
    back = packed.unpack(flat)
    real = ~mask.t()
    assert torch.equal(back[real], x[real]) and not back[~real].any()
