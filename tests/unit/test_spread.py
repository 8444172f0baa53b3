"""`xlmr spread`: a model's results.json among baseline runs."""

import json

import pytest

from fairseq_xlmr.cli import main as xlmr_main


def results(path, per_language):
    path.parent.mkdir(parents=True, exist_ok=True)
    average = sum(per_language.values()) / len(per_language)
    path.write_text(json.dumps({"task": "udhr", "per_language": per_language, "average": average}))
    return path


def test_spread_counts_the_baselines_the_model_beats(tmp_path, capsys):
    model = results(tmp_path / "model.json", {"de": 30.0, "tr": 10.0})
    baselines = [results(tmp_path / f"r{k}.json", {"de": de, "tr": tr})
                 for k, (de, tr) in enumerate([(20.0, 12.0), (25.0, 8.0), (35.0, 14.0)])]
    out = tmp_path / "spread" / "udhr.md"
    assert xlmr_main(["spread", str(model), "--baselines", *map(str, baselines), "--out", str(out)]) == 0
    table = json.loads(out.with_suffix(".json").read_text())["spread"]
    assert table["de"] == {"model": 30.0, "mean": pytest.approx(80 / 3), "std": pytest.approx(7.6376, abs=1e-4),
                           "min": 20.0, "max": 35.0, "below": 2, "of": 3}
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
        xlmr_main(["spread", str(model), "--baselines", str(one), "--out", str(out)])
    with pytest.raises(ValueError, match="r2.json has no score for tr"):
        xlmr_main(["spread", str(model), "--baselines", str(one), str(no_tr), "--out", str(out)])
    with pytest.raises(ValueError, match="no `per_language` and `average`"):
        xlmr_main(["spread", str(model), "--baselines", str(one), str(summary), "--out", str(out)])
    assert not out.exists()
