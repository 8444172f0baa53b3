"""BERT-family import: a random transformers `BertModel`/`BertForMaskedLM` on an XLM-R-layout SentencePiece
vocabulary imports with the same hidden states at every layer (positions shifted, token type folded in,
LayerNorm epsilon 1e-12 carried), and exports back to HF with the same outputs."""

import json
import logging

import pytest
import torch

transformers = pytest.importorskip("transformers")

from fairseq_xlmr import checkpoint, cli, hub  # noqa: E402
from fairseq_xlmr.interop import hf_import  # noqa: E402
from tests.fixtures.tiny_data import make_tiny_corpus, make_tiny_spm  # noqa: E402
from tests.unit.test_interop_hf import SAMPLE, batch, max_diff  # noqa: E402

EXTRA_ROWS = 7  # e5's table has 35 rows past the tokenizer's 250,002


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    root = tmp_path_factory.mktemp("vocab")
    return make_tiny_spm(root / "spm", make_tiny_corpus(root / "corpus", lines=100), vocab_size=120)


def write_bert(directory, vocab, architecture):
    """A random BERT of `architecture` with every weight perturbed (LayerNorms too), with our tokenizer."""
    size = len(checkpoint.load_dictionary(str(vocab["dict"])))
    config = transformers.BertConfig(
        vocab_size=size + EXTRA_ROWS, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=40, type_vocab_size=2, layer_norm_eps=1e-12,
        pad_token_id=0)  # BERT's own pad id; the vocabulary's is 1
    torch.manual_seed(0)
    model = getattr(transformers, architecture)(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(str(directory))
    (directory / "sentencepiece.bpe.model").write_bytes(vocab["spm"].read_bytes())
    return model


@pytest.fixture(scope="module", params=["BertModel", "BertForMaskedLM"])
def imported(request, tmp_path_factory, vocab):
    root = tmp_path_factory.mktemp(request.param)
    bert = write_bert(root / "hf", vocab, request.param)
    assert cli.main(["import-hf", str(root / "hf"), str(root / "ours")]) == 0
    return bert, hub.from_pretrained(str(root / "ours")), root


def test_every_layer_matches_bert(imported):
    bert, ours, _ = imported
    assert ours.model.args.layer_norm_eps == 1e-12 and ours.model.args.max_positions == 40
    tokens, mask = batch(ours, SAMPLE)
    with torch.no_grad():
        out = bert(input_ids=tokens, attention_mask=mask, output_hidden_states=True)
        states = ours.extract_features(tokens, return_all_hiddens=True)
    hidden = out.hidden_states
    assert len(hidden) == len(states) == 3
    diffs = [max_diff(h, s, mask[..., None].expand_as(s)) for h, s in zip(hidden, states)]
    assert max(diffs) <= 1e-5, diffs
    if isinstance(bert, transformers.BertForMaskedLM):
        with torch.no_grad():
            logits = ours.model(tokens)[0]
        assert max_diff(out.logits[..., :logits.shape[-1]], logits, mask[..., None].expand_as(logits)) <= 1e-5


def test_the_epsilon_matters_and_export_carries_it(imported, tmp_path):
    """With fairseq's fixed 1e-5 the states differ (what importing used to refuse); the HF export keeps 1e-12."""
    bert, ours, root = imported
    tokens, mask = batch(ours, SAMPLE)
    with torch.no_grad():
        want = ours.extract_features(tokens)
        for module in ours.model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.eps = 1e-5
        wrong = ours.extract_features(tokens)
    assert max_diff(want, wrong, mask[..., None].expand_as(want)) > 1e-5
    assert cli.main(["export-hf", str(root / "ours"), str(tmp_path / "hf")]) == 0
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["layer_norm_eps"] == 1e-12
    exported = transformers.XLMRobertaModel.from_pretrained(str(tmp_path / "hf")).eval()
    with torch.no_grad():
        got = exported(input_ids=tokens, attention_mask=mask).last_hidden_state
    assert max_diff(got, want, mask[..., None].expand_as(want)) <= 1e-5


def test_rows_past_the_tokenizer_are_dropped_and_a_missing_lm_head_is_reported(vocab, tmp_path, caplog):
    write_bert(tmp_path / "hf", vocab, "BertModel")
    with caplog.at_level(logging.WARNING):
        hf_import.import_hf(tmp_path / "hf", tmp_path / "ours")
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "without an LM head; the imported LM head is freshly initialised" in messages
    assert f"dropping embedding rows {len(checkpoint.load_dictionary(str(vocab['dict'])))}" in messages
    state = torch.load(tmp_path / "ours" / "model.pt", weights_only=True)
    assert state["model"]["encoder.sentence_encoder.embed_tokens.weight"].shape[0] == len(
        checkpoint.load_dictionary(str(vocab["dict"])))
    assert state["cfg"]["model"]["layer_norm_eps"] == 1e-12


def test_wordpiece_and_other_bert_heads_are_refused_before_anything_is_written(vocab, tmp_path):
    write_bert(tmp_path / "hf", vocab, "BertModel")
    (tmp_path / "hf" / "sentencepiece.bpe.model").unlink()
    (tmp_path / "hf" / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n")
    with pytest.raises(FileNotFoundError, match="WordPiece vocab.txt.*not WordPiece \\(mBERT\\)"):
        hf_import.import_hf(tmp_path / "hf", tmp_path / "out")
    (tmp_path / "hf" / "tokenizer.json").write_text(json.dumps({"model": {"type": "WordPiece", "vocab": {}}}))
    with pytest.raises(ValueError, match="is a WordPiece tokenizer.*SentencePiece unigram"):
        hf_import.import_hf(tmp_path / "hf", tmp_path / "out")
    write_bert(tmp_path / "cls", vocab, "BertForSequenceClassification")
    with pytest.raises(ValueError, match=r"BERT architectures \['BertForSequenceClassification'\] cannot be imported"):
        hf_import.import_hf(tmp_path / "cls", tmp_path / "out")
    assert not (tmp_path / "out").exists()
