"""GPU checks (skipped without CUDA; run them on a GPU machine): SDPA parity and the fused kernel."""

import pytest
import torch
from fairseq.modules import MultiheadAttention
from omegaconf import OmegaConf
from torch import nn

from fairseq_xlmr.models.xlmr_encoder import XlmrSelfAttention
from fairseq_xlmr.optim.xlmr_fused_adam import XlmrFusedAdam

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("with_padding", [False, True])
def test_sdpa_attention_equals_fairseq_attention_on_cuda(dtype, tolerance, with_padding):
    torch.manual_seed(0)
    ours = XlmrSelfAttention(256, 4, dropout=0.0, self_attention=True).cuda().eval()
    stock = MultiheadAttention(256, 4, dropout=0.0, self_attention=True).cuda().eval()
    stock.load_state_dict(ours.state_dict())
    x = torch.randn(128, 8, 256, device="cuda")
    padding = None
    if with_padding:
        padding = torch.zeros(8, 128, dtype=torch.bool, device="cuda")
        padding[3, 70:] = True
    with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
        expected, _ = stock(x, x, x, key_padding_mask=padding, need_weights=False)
        got, _ = ours(x, x, x, key_padding_mask=padding, need_weights=False)
    keep = ~padding.t() if with_padding else torch.ones(128, 8, dtype=torch.bool, device="cuda")
    assert (got.float()[keep] - expected.float()[keep]).abs().max().item() <= tolerance


def test_fused_kernel_is_used_on_cuda_and_matches_foreach():
    cfg = OmegaConf.create({"adam_betas": "(0.9, 0.98)", "adam_eps": 1e-6, "weight_decay": 0.01,
                            "lr": [1e-3], "implementation": "auto"})
    results = []
    for device, impl in (("cuda", "fused"), ("cuda", "foreach")):
        torch.manual_seed(0)
        model = nn.Linear(64, 64).to(device)
        optimizer = XlmrFusedAdam(OmegaConf.merge(cfg, {"implementation": impl}), list(model.parameters()))
        assert optimizer.implementation == impl
        for _ in range(10):
            optimizer.zero_grad()
            model(torch.ones(4, 64, device=device)).pow(2).sum().backward()
            optimizer.step()
        results.append(model.weight.detach().clone())
    assert XlmrFusedAdam(cfg, [nn.Parameter(torch.zeros(3, device="cuda"))]).implementation == "fused"
    assert (results[0] - results[1]).abs().max().item() < 1e-5


def test_bf16_autocast_runs_the_encoder_in_bf16_with_fp32_weights():
    from tests.unit.test_xlmr_encoder import build

    torch.manual_seed(0)
    model = build("xlmr_debug", dropout=0.0, attention_dropout=0.0).cuda().eval()
    tokens = torch.randint(4, 900, (4, 64), device="cuda")
    reference, _ = model(tokens)
    model.args.bf16_autocast = True
    logits, _ = model(tokens)
    assert logits.dtype == torch.bfloat16 and model.encoder.sentence_encoder.embed_tokens.weight.dtype == torch.float32
    assert (logits.float() - reference).abs().max().item() < 0.1 * reference.abs().max().item()
    assert (logits.float().argmax(-1) == reference.argmax(-1)).float().mean().item() > 0.9
