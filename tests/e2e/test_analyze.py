"""`xlmr analyze {cka,bli,align,retrieve,probe}` end to end on tiny real model dirs."""

import json
import random
import shutil

import pytest
import torch

from fairseq_xlmr import checkpoint
from fairseq_xlmr.cli import run as xlmr_run
from fairseq_xlmr.experiments.random_init import write_random_init
from tests.fixtures.tiny_data import _WORDS, make_sentence
from tests.fixtures.tiny_finetune import pretrained_model_dir, write_keyword_tsv

EMBED = "encoder.sentence_encoder.embed_tokens.weight"


def xlmr(argv):
    return xlmr_run([str(arg) for arg in argv])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{"trained": a 10-update xlmr_debug dir, "random": its random-init twin, "rotated": the trained
    model with its input embedding table multiplied by a random orthogonal matrix}."""
    root = tmp_path_factory.mktemp("analyze")
    trained = pretrained_model_dir(root)
    random_dir = root / "random"
    write_random_init(trained, random_dir, seed=7)
    rotated = root / "rotated"
    shutil.copytree(trained, rotated)
    state = checkpoint.load(trained / "model.pt")
    dim = state["model"][EMBED].shape[1]
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(0)))
    table = state["model"][EMBED]
    for key, value in list(state["model"].items()):  # the LM head's tied copy too, or loading would undo it
        if value.shape == table.shape and torch.equal(value, table):
            state["model"][key] = table @ q
    torch.save(state, rotated / "model.pt")
    return {"trained": trained, "random": random_dir, "rotated": rotated}


def distinct_sentences(lang: str, n: int, seed: int):
    rng, lines = random.Random(seed), []
    while len(lines) < n:
        sentence = make_sentence(rng, lang)
        if sentence not in lines:
            lines.append(sentence)
    return lines


@pytest.fixture(scope="module")
def parallel(tmp_path_factory):
    """en.txt and de.txt of 130 lines each (random sentences; line i of de is not a translation)."""
    data = tmp_path_factory.mktemp("parallel")
    for lang, seed in (("en", 1), ("de", 2)):
        (data / f"{lang}.txt").write_text("\n".join(distinct_sentences(lang, 130, seed)) + "\n", encoding="utf-8")
    return data


def test_cka_same_sentences_same_model_is_one_and_differs_for_a_random_twin(models, parallel, tmp_path):
    same = tmp_path / "same"
    assert xlmr(["analyze", "cka", "--model-a", models["trained"], "--model-b", models["trained"], "--lang-a", "en",
                 "--lang-b", "en", "--data-dir", parallel, "--out-dir", same, "--max-lines", "60", "--cpu"]) == 0
    result = json.loads((same / "cka.json").read_text())
    assert result["layers_a"] == result["layers_b"] == [0, 1, 2] and result["sentences"] == 60
    assert result["diagonal"] == pytest.approx([1.0, 1.0, 1.0], abs=1e-6)
    assert all(v < 0.5 for v in result["diagonal_shuffled"])  # unpaired sentences: chance level
    assert all(0 < v <= 1 + 1e-9 for row in result["matrix"] for v in row)
    assert "| A0 | 1.000 |" in (same / "cka.md").read_text()
    assert (same / "cka.png").stat().st_size > 10_000

    twin = tmp_path / "twin"
    assert xlmr(["analyze", "cka", "--model-a", models["trained"], "--model-b", models["random"], "--lang-a", "en",
                 "--lang-b", "en", "--data-dir", parallel, "--out-dir", twin, "--kernel", "rbf", "--cpu"]) == 0
    result = json.loads((twin / "cka.json").read_text())
    assert result["kernel"] == "rbf" and result["sentences"] == 130
    assert all(0 < v < 0.999 for v in result["diagonal"])  # different weights, different geometry

    cross = tmp_path / "cross"
    assert xlmr(["analyze", "cka", "--model-a", models["trained"], "--lang-a", "en", "--lang-b", "de",
                 "--data-dir", parallel, "--out-dir", cross, "--cpu"]) == 0
    assert len(json.loads((cross / "cka.json").read_text())["matrix"]) == 3

    with pytest.raises(ValueError, match="--lang-a and --lang-b are both 'en' with one model"):
        xlmr(["analyze", "cka", "--model-a", models["trained"], "--lang-a", "en", "--lang-b", "en",
              "--data-dir", parallel, "--out-dir", tmp_path / "bad", "--cpu"])
    with pytest.raises(ValueError, match="no parallel en/fr text"):
        xlmr(["analyze", "cka", "--model-a", models["trained"], "--lang-a", "en", "--lang-b", "fr",
              "--data-dir", parallel, "--out-dir", tmp_path / "bad", "--cpu"])


def spelled_words(model_dir):
    """The tiny corpora's words (lower-cased) whose SentencePiece pieces are known and differ from every
    other word's, so that no two words share a vector."""
    from fairseq_xlmr.analysis.features import load_hub, word_pieces

    hub = load_hub(model_dir, cpu=True)
    seen, words = set(), []
    for vocabulary in _WORDS.values():
        for word in (w.lower() for w in vocabulary):
            ids = tuple(word_pieces(hub, word))
            if hub.dictionary.unk() not in ids and ids not in seen:
                seen.add(ids)
                words.append(word)
    return words


def test_bli_procrustes_recovers_a_rotated_embedding_table(models, tmp_path):
    words = spelled_words(models["trained"])
    assert len(words) > 40
    # Train on every word, test on 20 of them: the map is fitted on the span the test words live in
    # (the tiny model has fewer distinct words than dimensions, so held-out words could leave it).
    (tmp_path / "en-xx.0-5000.txt").write_text("".join(f"{w} {w}\n" for w in words), encoding="utf-8")
    (tmp_path / "en-xx.5000-6500.txt").write_text("".join(f"{w} {w}\n" for w in words[::2][:20]), encoding="utf-8")
    out = tmp_path / "bli"
    assert xlmr(["analyze", "bli", "--model-a", models["trained"], "--model-b", models["rotated"], "--src", "en",
                 "--tgt", "xx", "--dictionary", tmp_path, "--embeddings", "input", "--out-dir", out, "--cpu"]) == 0
    result = json.loads((out / "bli.json").read_text())
    assert (result["train_pairs"], result["test_words"], result["tgt_pool"]) == (len(words), 20, len(words))
    precision = result["precision"]
    # The rotation hides the translations from the identity map; Procrustes undoes it exactly.
    assert precision["identity"]["nn"]["1"] <= 20.0
    for mapping in ("procrustes", "refined"):
        assert precision[mapping]["nn"] == {"1": 100.0, "5": 100.0, "10": 100.0}
        assert precision[mapping]["csls"]["1"] == 100.0
    assert result["identical_gold_share"] == 100.0
    assert "| procrustes | NN | 100.0 | 100.0 | 100.0 |" in (out / "bli.md").read_text()
    assert (out / "bli.png").stat().st_size > 10_000


def test_bli_contextual_words_from_a_corpus(models, parallel, tmp_path):
    words = [w.lower() for w in _WORDS["en"]]
    dictionary = tmp_path / "en-en.txt"
    dictionary.write_text("".join(f"{w} {w}\n" for w in words), encoding="utf-8")
    out = tmp_path / "ctx"
    assert xlmr(["analyze", "bli", "--model-a", models["trained"], "--src", "en", "--tgt", "en",
                 "--dictionary", dictionary, "--embeddings", "contextual", "--corpus-dir", parallel, "--layer", "2",
                 "--train-words", "15", "--test-words", "10", "--out-dir", out, "--cpu"]) == 0
    result = json.loads((out / "bli.json").read_text())
    assert result["layer"] == 2 and result["src_pool"] == result["tgt_pool"] == 25  # every word occurs
    assert result["precision"]["identity"]["nn"]["1"] == 100.0  # same model, same occurrences
    with pytest.raises(ValueError, match="--embeddings contextual needs --corpus-dir"):
        xlmr(["analyze", "bli", "--model-a", models["trained"], "--src", "en", "--tgt", "en", "--dictionary",
              dictionary, "--embeddings", "contextual", "--out-dir", out, "--cpu"])


def test_several_languages_each_run_and_results_json_holds_the_reported_values(models, parallel, tmp_path):
    """--lang-b / --tgt as comma lists: one run per language into OUT_DIR/<lang>, and with --name one results.json
    for `xlmr report` (CKA at --report-layer, BLI's identity-map CSLS P@1 by default)."""
    import shutil

    from fairseq_xlmr.evaluation.results import read_results

    data = shutil.copytree(parallel, tmp_path / "parallel")
    (data / "xx.txt").write_text((data / "en.txt").read_text(encoding="utf-8"), encoding="utf-8")
    out = tmp_path / "cka"
    assert xlmr(["analyze", "cka", "--model-a", models["trained"], "--lang-a", "en", "--lang-b", "de,xx",
                 "--data-dir", data, "--out-dir", out, "--max-lines", "60", "--name", "cka", "--report-layer",
                 "1", "--cpu"]) == 0
    results = read_results(out)
    for lang in ("de", "xx"):
        assert results["per_language"][lang] == json.loads((out / lang / "cka.json").read_text())["diagonal"][1]
    assert results["per_language"]["xx"] == pytest.approx(1.0, abs=1e-6)  # the same sentences
    assert results["layer"] == 1 and results["task"] == "cka"

    words = spelled_words(models["trained"])
    for tgt in ("xx", "yy"):
        (tmp_path / f"en-{tgt}.0-5000.txt").write_text("".join(f"{w} {w}\n" for w in words), encoding="utf-8")
        (tmp_path / f"en-{tgt}.5000-6500.txt").write_text("".join(f"{w} {w}\n" for w in words[::2][:20]),
                                                          encoding="utf-8")
    out = tmp_path / "bli"
    assert xlmr(["analyze", "bli", "--model-a", models["trained"], "--src", "en", "--tgt", "xx,yy", "--dictionary",
                 tmp_path, "--out-dir", out, "--name", "bli", "--cpu"]) == 0
    results = read_results(out)
    assert results["per_language"] == {"xx": 100.0, "yy": 100.0}  # the same word in one space: identity finds it
    assert results["measure"] == "identity-map CSLS P@1"
    with pytest.raises(ValueError, match="`--tgt` lists xx more than once"):
        xlmr(["analyze", "bli", "--model-a", models["trained"], "--tgt", "xx,xx", "--dictionary", tmp_path,
              "--out-dir", tmp_path / "again", "--cpu"])


def test_align_per_layer_before_and_after_the_map(models, parallel, tmp_path):
    out = tmp_path / "align"
    assert xlmr(["analyze", "align", "--model-a", models["trained"], "--model-b", models["trained"], "--src", "en",
                 "--tgt", "en", "--data-dir", parallel, "--train-lines", "100", "--out-dir", out, "--cpu"]) == 0
    result = json.loads((out / "align.json").read_text())
    assert result["layers"] == [0, 1, 2] and (result["train_pairs"], result["test_pairs"]) == (100, 30)
    # Same model, same sentences: the spaces coincide, and an orthogonal map fitted on them is the identity.
    assert result["before"] == result["after"] == [100.0] * 3

    twin = tmp_path / "twin"
    assert xlmr(["analyze", "align", "--model-a", models["trained"], "--model-b", models["random"], "--src", "en",
                 "--tgt", "en", "--data-dir", parallel, "--map", "linear", "--out-dir", twin, "--cpu"]) == 0
    result = json.loads((twin / "align.json").read_text())
    assert result["train_pairs"] == 65 and len(result["after"]) == 3
    assert all(0.0 <= v <= 100.0 for v in result["after"] + result["before"])
    assert "| layer | before | after |" in (twin / "align.md").read_text()
    assert (twin / "align.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="--train-lines 129 of 130 pairs"):
        xlmr(["analyze", "align", "--model-a", models["trained"], "--model-b", models["random"],
              "--src", "en", "--tgt", "de", "--data-dir", parallel, "--train-lines", "129", "--out-dir", twin])


def test_retrieve_is_eval_retrieval(models, parallel, tmp_path):
    data = tmp_path / "copy"
    data.mkdir()
    shutil.copy(parallel / "en.txt", data / "en.txt")
    shutil.copy(parallel / "en.txt", data / "xx.txt")
    out = tmp_path / "retrieve"
    assert xlmr(["analyze", "retrieve", "--model-dir", models["trained"], "--data-dir", data, "--out-dir", out,
                 "--report-layer", "2", "--cpu"]) == 0
    report = json.loads((out / "retrieval.json").read_text())
    assert report["accuracy"]["cosine"]["xx"]["to_pivot"] == [100.0] * 3


@pytest.fixture(scope="module")
def keyword_data(tmp_path_factory):
    """en/train.tsv (160 rows), en/test.tsv and de/test.tsv (60 each): is the language's "cat" word in it?"""
    data = tmp_path_factory.mktemp("keyword")
    write_keyword_tsv(data / "en" / "train.tsv", "en", 160, seed=1)
    write_keyword_tsv(data / "en" / "test.tsv", "en", 60, seed=2)
    write_keyword_tsv(data / "de" / "test.tsv", "de", 60, seed=3)
    return data


def test_probe_fits_on_english_and_matches_a_by_hand_probe_raw_and_centred(models, keyword_data, tmp_path):
    from sklearn.linear_model import LogisticRegression

    from fairseq_xlmr.analysis import features
    from fairseq_xlmr.data.readers import read_labelled_tsv

    out = tmp_path / "probe"
    assert xlmr(["analyze", "probe", "--model-a", models["trained"], "--model-b", models["random"],
                 "--data-dir", keyword_data, "--out-dir", out, "--cpu"]) == 0
    result = json.loads((out / "probe.json").read_text())
    assert result["labels"] == ["no", "yes"] and result["sentences"] == {"train": 160, "de": 60, "en": 60}
    for model in result["models"].values():
        for name in ("raw", "centred"):
            assert sorted(model[name]) == ["0", "1", "2"]
            for by_lang in model[name].values():
                assert sorted(by_lang) == ["de", "en"]
                assert all(sum(s["predicted"].values()) == pytest.approx(100.0) for s in by_lang.values())
    # The keyword's piece is in the mean of the input embeddings: a linear probe finds it in English.
    assert result["models"]["a"]["raw"]["0"]["en"]["accuracy"] >= 90.0

    # By hand for the trained model, layer 1: the same classifier; centred = each language's mean moved
    # onto the training mean (a flipped or missing shift gives other predictions on German).
    hub = features.load_hub(models["trained"], cpu=True).eval()
    rows = {split: read_labelled_tsv(keyword_data / lang / f"{split}.tsv", "sentence1", "label", language=lang)
            for lang, split in (("en", "train"), ("de", "test"))}
    x = {k: features.sentence_states(hub, [e.text_a for e in v])[1].double().numpy() for k, v in rows.items()}
    y = {k: [e.label for e in v] for k, v in rows.items()}
    clf = LogisticRegression(C=1.0, max_iter=5000, random_state=0).fit(x["train"], y["train"])
    raw = 100.0 * (clf.predict(x["test"]) == y["test"]).mean()
    shifted = clf.predict(x["test"] - x["test"].mean(0) + x["train"].mean(0))
    centred = 100.0 * (shifted == y["test"]).mean()
    assert result["models"]["a"]["raw"]["1"]["de"]["accuracy"] == pytest.approx(raw)
    assert result["models"]["a"]["centred"]["1"]["de"]["accuracy"] == pytest.approx(centred)
    assert result["models"]["a"]["centred"]["1"]["de"]["predicted"]["yes"] == pytest.approx(
        100.0 * (shifted == "yes").mean())
    assert not (shifted == clf.predict(x["test"])).all()  # the shift moved some German predictions
    assert f"| a: xlmr.debug | centred | 1 | {centred:.1f} (" in (out / "probe.md").read_text()
    assert (out / "probe.png").stat().st_size > 10_000


def test_probe_refuses_unseen_labels_and_missing_files_before_writing(models, keyword_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(keyword_data, data)
    with (data / "de" / "test.tsv").open("a", encoding="utf-8") as f:
        f.write("Die Katze schläft.\tmaybe\n")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"labels \['maybe'\] are not in the training split"):
        xlmr(["analyze", "probe", "--model-a", models["trained"], "--data-dir", data, "--out-dir", out, "--cpu"])
    with pytest.raises(ValueError, match="no test file .*fr/test.tsv"):
        xlmr(["analyze", "probe", "--model-a", models["trained"], "--data-dir", keyword_data,
              "--test-langs", "de,fr", "--out-dir", out, "--cpu"])
    with pytest.raises(ValueError, match="no training file .*de/train.tsv"):
        xlmr(["analyze", "probe", "--model-a", models["trained"], "--data-dir", keyword_data,
              "--train-lang", "de", "--out-dir", out, "--cpu"])
    one_label = tmp_path / "one_label"
    (one_label / "en").mkdir(parents=True)
    (one_label / "en" / "train.tsv").write_text("sentence1\tlabel\nThe cat.\tyes\nA cat.\tyes\n", encoding="utf-8")
    shutil.copytree(keyword_data / "de", one_label / "de")
    with pytest.raises(ValueError, match="a probe needs at least two labels"):
        xlmr(["analyze", "probe", "--model-a", models["trained"], "--data-dir", one_label, "--out-dir", out, "--cpu"])
    assert not out.exists()


def test_probe_random_inits_spread_equals_probing_each_twin_alone(models, keyword_data, tmp_path):
    out = tmp_path / "spread"
    assert xlmr(["analyze", "probe", "--model-a", models["trained"], "--data-dir", keyword_data,
                 "--random-inits", "3", "--out-dir", out, "--cpu"]) == 0
    result = json.loads((out / "probe.json").read_text())
    spread = result["random_inits"]
    assert spread["seeds"] == [1, 2, 3]
    alone = []
    for seed in (1, 2, 3):  # the same twins, each probed on its own as model a
        twin = tmp_path / f"twin{seed}"
        write_random_init(models["trained"], twin, seed=seed)
        assert xlmr(["analyze", "probe", "--model-a", twin, "--data-dir", keyword_data,
                     "--out-dir", tmp_path / f"alone{seed}", "--cpu"]) == 0
        alone.append(json.loads((tmp_path / f"alone{seed}" / "probe.json").read_text())["models"]["a"])
    trained = result["models"]["a"]
    for name in ("raw", "centred"):
        for layer in ("0", "1", "2"):
            for lang in ("de", "en"):
                values = [a[name][layer][lang]["accuracy"] for a in alone]
                cell = spread[name][layer][lang]
                assert cell["mean"] == pytest.approx(sum(values) / 3)
                assert (cell["min"], cell["max"]) == (pytest.approx(min(values)), pytest.approx(max(values)))
                assert cell["below"] == sum(v < trained[name][layer][lang]["accuracy"] for v in values)
    assert len({a["raw"]["2"]["en"]["accuracy"] for a in alone} | {a["raw"]["2"]["de"]["accuracy"] for a in alone}) > 1
    assert "among 3 random inits" in (out / "probe.md").read_text()
    with pytest.raises(ValueError, match="--random-inits must be 0 or >= 2"):
        xlmr(["analyze", "probe", "--model-a", models["trained"], "--data-dir", keyword_data,
              "--random-inits", "1", "--out-dir", tmp_path / "none", "--cpu"])
    assert not (tmp_path / "none").exists()
