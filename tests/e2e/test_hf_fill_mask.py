"""A model trained by `fairseq-train`, exported with `xlmr export-hf`, fills masks in HF as in our hub."""

import shutil

import pytest

transformers = pytest.importorskip("transformers")

from fairseq_xlmr import cli, hub  # noqa: E402
from fairseq_xlmr.preprocess.binarize import binarize  # noqa: E402
from tests.fixtures.fairseq_run import USER_DIR, fairseq_train, json_stats, tiny_model_args  # noqa: E402
from tests.fixtures.tiny_data import make_tiny_corpus, make_tiny_spm  # noqa: E402

MASKED = ["The cat <mask> the house.", "Кот <mask> большой дом.", "猫<mask>房子。", "Der Hund läuft <mask> Baum."]


@pytest.fixture(scope="module")
def trained_model_dir(tmp_path_factory):
    """fairseq-train (stock masked_lm task, our xlmr_debug arch) on a 4-language corpus, 80 updates."""
    root = tmp_path_factory.mktemp("fill_mask")
    corpus = make_tiny_corpus(root / "corpus", lines=300)
    vocab = make_tiny_spm(root / "spm", corpus, vocab_size=120)
    # One "language" holding all four: stock masked_lm reads a single directory.
    (root / "mixed").mkdir()
    (root / "mixed" / "all.txt").write_text("".join(p.read_text("utf-8") for p in sorted(corpus.glob("*.txt"))), "utf-8")
    binarize(root / "mixed", vocab["spm"], root / "data-bin", quiet=True)
    data = root / "data-bin" / "all"
    shutil.copy(vocab["dict"], data / "dict.txt")  # masked_lm wants dict.txt beside train.bin
    messages = fairseq_train([
        data, "--user-dir", USER_DIR, "--task", "masked_lm", "--criterion", "masked_lm",
        *tiny_model_args("xlmr_debug"), "--lr", "5e-3", "--max-update", "80", "--save-dir", root / "checkpoints",
    ])
    losses = [float(s["loss"]) for s in json_stats(messages, key='"loss"')]
    model_dir = root / "model"
    model_dir.mkdir()
    shutil.copy(root / "checkpoints" / "checkpoint_last.pt", model_dir / "model.pt")
    for name in ("dict", "spm"):
        shutil.copy(vocab[name], model_dir / vocab[name].name)
    return model_dir, losses


def test_hf_fill_mask_pipeline_gives_our_top5(trained_model_dir, tmp_path):
    model_dir, losses = trained_model_dir
    assert len(losses) == 80 and losses[-1] < losses[0] - 1.0, losses  # it learned something
    assert cli.main(["export-hf", str(model_dir), str(tmp_path / "hf")]) == 0
    ours = hub.from_pretrained(str(model_dir))
    fill_mask = transformers.pipeline("fill-mask", model=str(tmp_path / "hf"), top_k=5)
    for text in MASKED:
        want = ours.fill_mask(text, topk=5)
        got = fill_mask(text)
        assert [ours.dictionary.index(piece) for _, _, piece in want] == [g["token"] for g in got], text
        assert max(abs(prob - g["score"]) for (_, prob, _), g in zip(want, got)) < 1e-5, text
        print(f"{text!r}: top-5 {[g['token_str'] for g in got]} agree (p1 = {got[0]['score']:.3f})")
