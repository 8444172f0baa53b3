"""scripts/eval_transfer.sh on a tiny model and tiny real-format data: every step for the model and its random-init
twins, `xlmr report` tables and `xlmr spread` placing the model among its twins; bad settings stop it first."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_analyze import distinct_sentences, spelled_words
from tests.fixtures.tiny_finetune import pretrained_model_dir, write_conllu, write_keyword_tsv

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "eval_transfer.sh"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny model dir, and CORPUS, DATA and DICTS dirs in the layouts of fetch-corpora, fetch-eval-data and
    fetch-dictionaries (en and de)."""
    root = tmp_path_factory.mktemp("transfer")
    model = pretrained_model_dir(root)
    corpus = root / "corpus"
    lines = {lang: distinct_sentences(lang, 60, seed) for lang, seed in (("en", 1), ("de", 2))}
    for sub in ("udhr", "mono", "para", "heldout"):
        (corpus / sub).mkdir(parents=True)
    for lang, text in lines.items():
        (corpus / "udhr" / f"{lang}.txt").write_text("\n".join(text) + "\n", encoding="utf-8")
        # "German" monolingual text of English words: the word lists below translate each word into itself
        (corpus / "mono" / f"{lang}.txt").write_text("\n".join(lines["en"]) + "\n", encoding="utf-8")
        (corpus / "para" / f"en-de.{lang}").write_text("\n".join(text) + "\n", encoding="utf-8")
        (corpus / "heldout" / f"tatoeba.de-eng.{'eng' if lang == 'en' else 'de'}").write_text(
            "\n".join(text[:30]) + "\n", encoding="utf-8")
    data = root / "data"
    for offset, lang in enumerate(("en", "de")):
        splits = ("train", "dev", "test") if lang == "en" else ("dev", "test")
        for n, split in enumerate(splits):
            write_keyword_tsv(data / "sentiment" / lang / f"{split}.tsv", lang, 80 if split == "train" else 30,
                              seed=10 * n + offset)
            write_conllu(data / "pos" / lang / f"{split}.conllu", lang, 60 if split == "train" else 20,
                         seed=10 * n + offset)
    (data / "summary.json").write_text("{}")
    dicts = root / "dicts"
    dicts.mkdir()
    words = spelled_words(model)
    (dicts / "en-de.0-5000.txt").write_text("".join(f"{w} {w}\n" for w in words), encoding="utf-8")
    (dicts / "en-de.5000-6500.txt").write_text("".join(f"{w} {w}\n" for w in words[::2][:20]), encoding="utf-8")
    (dicts / "summary.json").write_text("{}")
    env = {**os.environ, "K": "2", "CORPUS": str(corpus), "DATA": str(data), "DICTS": str(dicts), "LANGS": "de",
           "BLI_LANGS": "de", "OMP_NUM_THREADS": "1", "LR": "1e-3", "EPOCHS": "2", "SEEDS": "1", "MAX_LENGTH": "64"}
    return model, env, root


def run(model, env, **settings):
    return subprocess.run(["bash", str(SCRIPT), str(model)], env={**env, **settings}, capture_output=True, text=True)


def test_every_evaluation_places_the_model_among_its_twins(setup, tmp_path):
    model, env, _ = setup
    out = tmp_path / "out"
    done = run(model, env, OUT=str(out), STEPS="retrieval bli cka", K="2")
    assert done.returncode == 0, done.stderr[-3000:]
    runs = out / "runs"
    for task in ("udhr", "gettext", "bli_input", "bli_contextual", "cka"):
        spread = json.loads((out / "spread" / f"{task}.json").read_text())["spread"]
        mine = json.loads((runs / task / "pretrained" / "results.json").read_text())["per_language"]["de"]
        twins = [json.loads((runs / task / f"random{k}" / "results.json").read_text())["per_language"]["de"]
                 for k in (1, 2)]
        assert spread["de"]["model"] == mine and spread["de"]["max"] == max(twins)
        assert spread["de"]["below"] == sum(t < mine for t in twins)
    assert json.loads((runs / "udhr" / "pretrained" / "results.json").read_text())["layer"] == 1  # middle of 2
    assert (runs / "gettext" / "lexical" / "results.json").is_file()
    report = (out / "report.md").read_text()
    assert "## Retrieval xx→en of held-out gettext pairs" in report and "ours: cka/pretrained" in report
    assert "multilingual-e5-small (published, MTEB Tatoeba" in report


@pytest.mark.slow
def test_fine_tuning_steps_run_both_protocols_for_every_model(setup, tmp_path):
    model, env, _ = setup
    out = tmp_path / "out"
    done = run(model, env, OUT=str(out), STEPS="pos sentiment", RECIPE="xtreme")
    assert done.returncode == 0, done.stderr[-3000:]
    for task, rows in (("pos", ("pretrained", "random1", "random2")),
                       ("sentiment", ("pretrained", "pretrained_frozen", "random1", "random1_frozen"))):
        for row in rows:
            results = json.loads((out / "runs" / task / row / "seed1" / "results.json").read_text())
            assert set(results["per_language"]) == {"en", "de"}
            assert not list((out / "runs" / task / row / "seed1").glob("checkpoint*.pt"))  # dropped once scored
    assert (out / "spread" / "sentiment_frozen.md").is_file()
    assert "ours: sentiment/pretrained_frozen, train en (1 seed)" in (out / "report.md").read_text()


def test_bad_settings_stop_before_any_work(setup, tmp_path):
    model, env, root = setup
    out = tmp_path / "out"
    cases = [({"K": "two"}, "K=two: the number of random-init twins must be a whole number"),
             ({"STEPS": "pos parse"}, "STEPS names parse; known: pos sentiment retrieval bli cka"),
             ({"RECIPE": "frozen"}, "RECIPE=frozen; known: transfer xtreme"),
             ({"CORPUS": str(root / "nowhere")}, "nowhere/udhr not found; run `make demo`"),
             ({"BLI_LANGS": "de,es"}, "en-es.5000-6500.txt is missing or empty")]
    for settings, message in cases:
        done = run(model, env, OUT=str(out), **settings)
        assert done.returncode == 2 and message in done.stderr, done.stderr
    broken = tmp_path / "broken"
    shutil.copytree(model, broken)
    (broken / "dict.txt").unlink()
    done = run(broken, env, OUT=str(out))
    assert done.returncode == 2 and "broken/dict.txt not found" in done.stderr
    assert not out.exists()
