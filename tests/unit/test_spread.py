"""`xlmr spread`: a model's results.json among baseline runs."""

import json

import pytest

from fairseq_xlmr.cli import main as xlmr_main
from fairseq_xlmr.cli import run as xlmr_run


def results(path, per_language):
    path.parent.mkdir(parents=True, exist_ok=True)
    average = sum(per_language.values()) / len(per_language)
    path.write_text(json.dumps({"task": "udhr", "seed": 1, "metric": "accuracy", "split": "test",
                                "per_language": per_language, "average": average}))
    return path


def test_spread_counts_the_baselines_the_model_beats(tmp_path, capsys):
    model = results(tmp_path / "model.json", {"de": 30.0, "tr": 10.0})
    baselines = [results(tmp_path / f"r{k}.json", {"de": de, "tr": tr})
                 for k, (de, tr) in enumerate([(20.0, 12.0), (25.0, 8.0), (35.0, 14.0)])]
    out = tmp_path / "spread" / "udhr.md"
    assert xlmr_main(["spread", str(model), "--baselines", *map(str, baselines), "--out", str(out)]) == 0
    table = json.loads(out.with_suffix(".json").read_text())["spread"]
    assert table["de"] == {"model": 30.0, "mean": pytest.approx(80 / 3), "std": pytest.approx(7.6376, abs=1e-4),
                           "min": 20.0, "max": 35.0, "below": 2, "of": 3, "margin": -5.0, "seed_std": 0.0,
                           "clear": False}
    assert (table["tr"]["below"], table["tr"]["mean"]) == (1, pytest.approx(34 / 3))
    assert table["average"]["model"] == 20.0 and table["average"]["below"] == 2  # averages 16, 16.5, 24.5
    text = out.read_text()
    assert "| model beats | 2/3 | 1/3 | 2/3 |" in text and "| baselines min-max | 20.0-35.0 |" in text
    assert text in capsys.readouterr().out


def test_spread_refuses_too_few_runs_missing_languages_and_summaries(tmp_path):
    model = results(tmp_path / "model.json", {"de": 30.0, "tr": 10.0})
    one = results(tmp_path / "r1.json", {"de": 20.0, "tr": 12.0})
    no_tr = results(tmp_path / "r2.json", {"de": 25.0})
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"mean": {"de": 1.0}}))
    out = tmp_path / "out.md"
    with pytest.raises(ValueError, match="at least two runs"):
        xlmr_run(["spread", str(model), "--baselines", str(one), "--out", str(out)])
    with pytest.raises(ValueError, match="r2.json has no score for tr"):
        xlmr_run(["spread", str(model), "--baselines", str(one), str(no_tr), "--out", str(out)])
    with pytest.raises(ValueError, match="no `per_language` and `average`"):
        xlmr_run(["spread", str(model), "--baselines", str(one), str(summary), "--out", str(out)])
    assert not out.exists()


def test_run_directories_are_their_mean_over_seeds_and_the_margin_is_weighed_against_seed_spread(tmp_path):
    """finetune-seeds layouts (seed<k>/results.json): means over seeds; 'clear' when the margin over the best
    baseline exceeds the larger seed std of the model and of that baseline."""
    for seed, (de, tr) in enumerate([(60.0, 40.0), (64.0, 36.0)], start=1):
        results(tmp_path / "model" / f"seed{seed}" / "results.json", {"de": de, "tr": tr})  # de 62 ± 2.83, tr 38
    for k, runs in enumerate([[(50.0, 37.0), (52.0, 35.0)], [(55.0, 30.0), (55.0, 30.0)]]):
        for seed, (de, tr) in enumerate(runs, start=1):
            results(tmp_path / f"random{k}" / f"seed{seed}" / "results.json", {"de": de, "tr": tr})
    out = tmp_path / "pos.md"
    assert xlmr_main(["spread", str(tmp_path / "model"), "--baselines", str(tmp_path / "random0"),
                      str(tmp_path / "random1"), "--out", str(out)]) == 0
    table = json.loads(out.with_suffix(".json").read_text())["spread"]
    assert table["de"]["model"] == 62.0 and table["de"]["max"] == 55.0 and table["de"]["below"] == 2
    assert table["de"]["margin"] == 7.0 and table["de"]["seed_std"] == pytest.approx(2.8284, abs=1e-4)
    assert table["de"]["clear"] is True
    # tr: 38 against the best baseline's 36 (random0, std 1.41) with the model's own std 2.83: not clear
    assert table["tr"]["margin"] == 2.0 and table["tr"]["clear"] is False
    assert "| margin over the best (seed std) | +7.0 (2.8) | +2.0 (2.8) not clear |" in out.read_text()


def test_scores_on_a_unit_scale_keep_three_decimals(tmp_path):
    model = results(tmp_path / "model.json", {"de": 0.781, "tr": 0.822})
    baselines = [results(tmp_path / f"r{k}.json", {"de": de, "tr": 0.76}) for k, de in enumerate([0.672, 0.694])]
    out = tmp_path / "cka.md"
    assert xlmr_main(["spread", str(model), "--baselines", *map(str, baselines), "--out", str(out)]) == 0
    assert "| model | 0.781 | 0.822 | 0.801 |" in out.read_text()
    assert "| baselines min-max | 0.672-0.694 | 0.760-0.760 |" in out.read_text()
