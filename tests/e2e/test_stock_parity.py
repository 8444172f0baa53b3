"""State-dict contract: checkpoints written by stock fairseq RoBERTa, and the 2019 XLM-R release
layout, load into `xlmr_encoder` and give stock fairseq's outputs on the same weights."""

import argparse
import os

import pytest
import torch
from fairseq import checkpoint_utils

from fairseq_xlmr import checkpoint
from tests.fixtures.fairseq_run import fairseq_train, make_word_data_bin

STOCK_SIZES = ["--encoder-layers", "2", "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
               "--encoder-attention-heads", "4", "--max-positions", "32", "--tokens-per-sample", "32"]


@pytest.fixture(scope="module")
def stock_run(tmp_path_factory):
    """Stock fairseq (no --user-dir) trains `roberta_base` at small size for a few updates."""
    root = tmp_path_factory.mktemp("stock")
    data = make_word_data_bin(str(root / "data"))
    save_dir = root / "checkpoints"
    fairseq_train([data, "--task", "masked_lm", "--criterion", "masked_lm", "--arch", "roberta_base", *STOCK_SIZES, "--cpu",
                   "--batch-size", "8", "--max-update", "3", "--optimizer", "adam", "--lr", "1e-2",
                   "--save-dir", save_dir, "--no-epoch-checkpoints", "--disable-validation", "--seed", "3"])
    return str(save_dir / "checkpoint_last.pt"), os.path.join(data, "dict.txt")


def _tokens(vocab_size):
    torch.manual_seed(0)
    tokens = torch.randint(4, vocab_size - 1, (3, 12))
    tokens[:, 0] = 0  # <s>
    tokens[1, 8:] = 1  # padding
    tokens[1, 7] = tokens[0, -1] = tokens[2, -1] = 2  # </s>
    return tokens


def _outputs(model, tokens):
    with torch.no_grad():
        logits, extra = model(tokens, return_all_hiddens=True)
    return logits, extra["inner_states"]


def _assert_same_outputs(stock_model, our_model, vocab_size):
    """Every output at the real tokens; padding positions are read by nobody (ours: zeros when packed)."""
    tokens = _tokens(vocab_size)
    real = tokens.ne(1)  # (batch, seq_len)
    want_logits, want_states = _outputs(stock_model.eval(), tokens)
    got_logits, got_states = _outputs(our_model.eval(), tokens)
    assert len(got_states) == len(want_states) == 3  # embeddings + 2 layers
    assert (got_logits - want_logits)[real].abs().max().item() <= 1e-5
    for got, want in zip(got_states, want_states):
        assert (got - want)[real.t()].abs().max().item() <= 1e-5


def _stock_model(path):
    models, _cfg, _task = checkpoint_utils.load_model_ensemble_and_task([path])
    return models[0]


def test_stock_fairseq_checkpoint_gives_the_same_outputs(stock_run):
    path, dict_path = stock_run
    stock = _stock_model(path)
    assert type(stock).__name__ == "RobertaModel"
    ours = checkpoint.load_model(path, checkpoint.load_dictionary(dict_path))
    assert type(ours).__name__ == "XlmrEncoderModel"
    assert set(ours.state_dict()) == set(stock.state_dict())
    _assert_same_outputs(stock, ours, len(ours.encoder.dictionary))


def _to_2019_layout(state):
    """Rewrite a current checkpoint the way the 2019 XLM-R release stored it."""
    old = {}
    for key, value in state["model"].items():
        key = key.replace("encoder.", "decoder.", 1).replace(".layernorm_embedding.", ".emb_layer_norm.")
        old[key] = value
    # 2019 attention kept q/k/v in one in_proj matrix; fairseq splits it on load.
    for prefix in sorted({k.rsplit(".q_proj.", 1)[0] for k in old if ".q_proj." in k}):
        for kind in ("weight", "bias"):
            parts = [old.pop(f"{prefix}.{p}_proj.{kind}") for p in ("q", "k", "v")]
            old[f"{prefix}.in_proj_{kind}"] = torch.cat(parts, dim=0)
    args = argparse.Namespace(**{k: v for k, v in vars(state["cfg"]["model"]).items()
                                 if k != "layernorm_embedding"})
    return {"args": args, "model": old}


def test_2019_release_layout_gives_the_same_outputs(stock_run, tmp_path):
    path, dict_path = stock_run
    old_path = str(tmp_path / "model.pt")
    torch.save(_to_2019_layout(torch.load(path, weights_only=True)), old_path)
    assert any(k.startswith("decoder.sentence_encoder.emb_layer_norm") for k in torch.load(old_path, weights_only=True)["model"])
    ours = checkpoint.load_model(old_path, checkpoint.load_dictionary(dict_path))
    _assert_same_outputs(_stock_model(path), ours, len(ours.encoder.dictionary))


def test_a_dictionary_of_another_size_is_refused(stock_run, tmp_path):
    path, dict_path = stock_run
    wrong = tmp_path / "dict.txt"
    wrong.write_text(open(dict_path).read() + "extra 1\n")
    with pytest.raises(ValueError, match="embedding rows but the dictionary has"):
        checkpoint.load_model(path, checkpoint.load_dictionary(str(wrong)))
