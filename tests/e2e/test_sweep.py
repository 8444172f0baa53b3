"""`xlmr sweep`: one command trains a model per swept value (real fairseq-hydra-train runs) and plots
perplexity and UDHR-style retrieval against the value."""

import json
import re
from pathlib import Path

import pytest

from fairseq_xlmr.cli import main as xlmr
from fairseq_xlmr.experiments.sweep import Sweep, parse_values, split_by_resource, summarize
from fairseq_xlmr.preprocess.binarize import binarize
from tests.fixtures.tiny_data import make_tiny_corpus, make_tiny_spm

TINY = ["dataset.batch_size=8", "task.tokens_per_sample=32", "model.max_positions=32", "common.log_interval=1",
        "dataset.num_workers=0"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    # en is 8x larger than zh: alpha decides how often zh is drawn.
    corpus = make_tiny_corpus(root / "mono", languages=("en", "de", "zh"), lines={"en": 400, "de": 200, "zh": 50})
    spm = make_tiny_spm(root / "spm", corpus, vocab_size=120)
    binarize(corpus_dir=corpus, spm_model=spm["spm"], dest_dir=root / "data-bin", valid_lines=10, quiet=True)
    # "UDHR": 12 aligned lines per language (the pivot en and two others).
    udhr = make_tiny_corpus(root / "udhr", languages=("en",), lines=12, seed=3)
    for lang in ("de", "zh"):
        make_tiny_corpus(root / "udhr_tmp", languages=(lang,), lines=12, seed=3)
        (udhr / f"{lang}.txt").write_text((root / "udhr_tmp" / f"{lang}.txt").read_text())
    return root


def test_parse_values_checks_each_parameter_range():
    assert parse_values("alpha", "1.0,0.3") == [0.3, 1.0]
    assert parse_values("vocab", "8000,2000") == [2000, 8000]
    with pytest.raises(ValueError, match=r"--param alpha must be in \(0, 1\].*got 1.7"):
        parse_values("alpha", "0.3,1.7")
    with pytest.raises(ValueError, match="at least 2 values"):
        parse_values("languages", "4")
    with pytest.raises(ValueError, match="whole numbers >= 1"):
        parse_values("languages", "2,2.5")


def test_summary_averages_the_shared_languages_and_splits_by_resource():
    high, low = split_by_resource({"en": 400, "de": 200, "zh": 50}, ["en", "de", "zh"])
    assert (high, low) == (["en", "de"], ["zh"])
    scores = {"ppl": {"en": 10.0, "de": 20.0, "zh": 60.0, "fr": 1000.0},
              "retrieval": {"layers": [0, 1, 2], "layer": 1,
                            "accuracy": {"de": [10.0, 50.0, 30.0], "zh": [0.0, 30.0, 50.0]}}}
    row = summarize(scores, ["en", "de", "zh"], high, low, pivot="en")  # fr is not shared: left out
    assert (row["ppl"], row["ppl_high"], row["ppl_low"]) == (30.0, 15.0, 60.0)
    assert (row["retrieval"], row["retrieval_best"], row["retrieval_best_layer"]) == (40.0, 40.0, 1)


def test_languages_sweep_trains_on_prefixes_and_scores_the_shared_ones(tiny):
    sweep = Sweep("languages", [1, 3], tiny / "out_lang", data_bin=tiny / "data-bin", spm_dir=tiny / "spm",
                  quiet=True)
    assert sweep.languages == ["en", "de", "zh"]  # the pivot first, then sorted
    assert sweep.run_languages(1) == ["en"]
    command = sweep.train_command(1, sweep.run_dir(1), tiny / "data-bin")
    assert "++task.languages='en'" in command
    assert sweep.run_dir(1).name == "languages_1"  # no "=" or ",": hydra would misread the paths
    with pytest.raises(ValueError, match="asks for 4 languages but only 3"):
        Sweep("languages", [2, 4], tiny / "out_lang", data_bin=tiny / "data-bin", spm_dir=tiny / "spm", quiet=True)
    with pytest.raises(ValueError, match="--data-bin must be a directory"):
        Sweep("alpha", [0.3, 1.0], tiny / "out", data_bin=tiny / "nowhere", spm_dir=tiny / "spm", quiet=True)


def _zh_share(train_out: Path) -> float:
    """q of zh from the task's language-sampling table in a training log."""
    row = re.search(r"\bzh\s+\d+\s+\d+\s+[\d.]+\s+([\d.]+)", train_out.read_text())
    return float(row.group(1))


@pytest.mark.slow
def test_alpha_sweep_trains_one_model_per_value_and_writes_table_and_plot(tiny, capsys):
    out = tiny / "out_alpha"
    argv = ["sweep", "--param", "alpha", "--values", "0.1,1.0", "--out-dir", str(out), "--data-bin",
            str(tiny / "data-bin"), "--spm-dir", str(tiny / "spm"), "--udhr-dir", str(tiny / "udhr"),
            "--config-name", "debug", "--max-update", "8", "--cpu"] + [x for o in TINY for x in ("--override", o)]
    assert xlmr(argv) == 0
    result = json.loads((out / "sweep.json").read_text())
    assert [row["value"] for row in result["rows"]] == [0.1, 1.0]
    assert result["languages"] == ["en", "de", "zh"] and result["low"] == ["zh"]
    # The swept value reached the task: with alpha 0.1, zh (p about 40/620) is drawn far more often.
    q_small, q_one = (_zh_share(out / f"alpha_{v}" / "train.out") for v in ("0.1", "1"))
    assert q_one < 0.08 and q_small > 0.25
    for row in result["rows"]:
        # Scored after training: below a uniform guess over the 121 ids, and retrieval is a percentage.
        assert 1.0 < row["ppl"] < 121 and 0.0 <= row["retrieval"] <= 100.0
        assert row["retrieval_layer"] == 1  # the middle of xlmr_debug's 2 layers
    table = (out / "sweep.md").read_text()
    assert table.count("\n| 0.1 |") == 1 and table.count("\n| 1 |") == 1
    assert (out / "sweep.png").stat().st_size > 10_000

    # Run again: every value is reused from its scores.json, nothing is trained.
    capsys.readouterr()
    assert xlmr(argv) == 0
    assert capsys.readouterr().out.count("reusing") == 2
