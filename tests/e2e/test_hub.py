"""from_pretrained over a model dir (model.pt + dict.txt + sentencepiece.bpe.model) of our own run."""

import shutil

import pytest
import torch

from fairseq_xlmr import checkpoint, hub
from fairseq_xlmr.preprocess.binarize import binarize
from tests.fixtures.fairseq_run import USER_DIR, fairseq_train
from tests.fixtures.tiny_data import make_tiny_corpus, make_tiny_spm


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    corpus = make_tiny_corpus(root / "corpus", languages=("en", "de", "ru"), lines=150)
    spm = make_tiny_spm(root / "spm", corpus, vocab_size=120)
    binarize(corpus, spm["spm"], root / "data-bin", valid_lines=10, quiet=True)
    fairseq_train([root / "data-bin", "--user-dir", USER_DIR, "--task", "xlmr_mlm", "--criterion", "xlmr_mlm",
                   "--arch", "xlmr_debug", "--max-positions", "64", "--tokens-per-sample", "64", "--cpu",
                   "--optimizer", "xlmr_fused_adam", "--lr", "3e-3", "--batch-size", "16", "--max-update", "30",
                   "--required-batch-size-multiple", "1", "--save-dir", root / "checkpoints",
                   "--disable-validation", "--num-workers", "0"])
    release = root / "release"
    release.mkdir()
    shutil.copy(root / "checkpoints" / "checkpoint_last.pt", release / "model.pt")
    shutil.copy(spm["spm"], release / "sentencepiece.bpe.model")
    shutil.copy(spm["dict"], release / "dict.txt")
    return release


def test_encode_decode_follow_the_xlmr_id_layout(model_dir):
    xlmr = hub.from_pretrained(str(model_dir))
    text = "The cat sees the dog."
    tokens = xlmr.encode(text)
    pieces = xlmr.sp.encode(text, out_type=str)
    assert tokens[0].item() == 0 and tokens[-1].item() == 2  # <s> ... </s>
    # fairseq id = SentencePiece id + 1 for ordinary pieces (dict.txt in SentencePiece order).
    assert tokens[1:-1].tolist() == [i + 1 for i in xlmr.sp.encode(text)]
    assert tokens[1:-1].tolist() == [xlmr.dictionary.index(p) for p in pieces]
    assert xlmr.decode(tokens) == text

    pair = xlmr.encode("The cat.", "Die Katze.")
    eos = (pair == 2).nonzero().flatten().tolist()
    assert len(eos) == 3 and eos[1] == eos[0] + 1  # <s> A </s></s> B </s>
    assert xlmr.decode(pair) == ["The cat.", "Die Katze."]


def test_extract_features_and_all_hidden_states(model_dir):
    xlmr = hub.from_pretrained(str(model_dir))
    tokens = xlmr.encode("Кот видит собаку.")
    features = xlmr.extract_features(tokens)
    states = xlmr.extract_features(tokens, return_all_hiddens=True)
    assert features.shape == (1, len(tokens), 64)
    assert len(states) == 3 and torch.equal(states[-1], features)  # embeddings + 2 layers


def test_fill_mask_ranks_the_model_predictions(model_dir):
    xlmr = hub.from_pretrained(str(model_dir))
    results = xlmr.fill_mask("The cat <mask> the dog.", topk=5)
    assert len(results) == 5
    probs = [p for _, p, _ in results]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6
    text, _, piece = results[0]
    assert text.startswith("The cat") and text.endswith("the dog.")
    # The top filler is the argmax of the model's distribution at the masked position.
    left = xlmr.sp.encode("The cat", out_type=str)
    tokens = torch.tensor([[0] + xlmr.pieces_to_ids(left) + [xlmr.dictionary.index("<mask>")]
                           + xlmr.pieces_to_ids(xlmr.sp.encode(" the dog.", out_type=str)) + [2]])
    logits, _ = xlmr.model(tokens)
    assert xlmr.dictionary[logits[0, len(left) + 1].argmax().item()] == piece
    with pytest.raises(ValueError, match="exactly one <mask>"):
        xlmr.fill_mask("no mask here")


@pytest.mark.parametrize("missing", ["dict.txt", "sentencepiece.bpe.model", "model.pt"])
def test_a_missing_file_is_named_with_the_fix(model_dir, tmp_path, missing):
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / missing).unlink()
    with pytest.raises(FileNotFoundError, match=missing):
        hub.from_pretrained(str(broken))


def test_a_dictionary_of_the_same_size_with_other_pieces_is_refused(model_dir, tmp_path):
    """The checkpoint records its dictionary's fingerprint: a swapped dict.txt would read the wrong rows."""
    state = torch.load(model_dir / "model.pt", weights_only=False)
    assert len(state["cfg"]["model"]["dictionary_fingerprint"]) == 16
    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    lines = (other / "dict.txt").read_text(encoding="utf-8").splitlines()
    lines[10], lines[11] = lines[11], lines[10]
    (other / "dict.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="another vocabulary, whose ids would read the wrong embedding rows"):
        hub.from_pretrained(str(other))
    # fine-tuning from it with that vocabulary is refused too, before any training
    from fairseq_xlmr.models.xlmr_encoder import dictionary_fingerprint
    from fairseq_xlmr.task_checks import check_matches_pretrained

    model_args = checkpoint.model_config_from_state(state)
    model_args.dictionary_fingerprint = dictionary_fingerprint(checkpoint.load_dictionary(str(other / "dict.txt")))
    with pytest.raises(ValueError, match="was trained with the dictionary .* another vocabulary"):
        check_matches_pretrained(model_args, model_dir / "model.pt")
