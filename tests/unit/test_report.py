"""`xlmr report` on hand-made results.json files: exact Markdown rows, column order, seeds, plots."""

import pytest

from fairseq_xlmr.cli import main as xlmr
from fairseq_xlmr.evaluation.report import PAPER_TABLES, collect, render_report
from fairseq_xlmr.evaluation.results import write_results


def em_extra(per_language):
    return {"extra_metrics": {"em": {"per_language": per_language,
                                     "average": sum(per_language.values()) / len(per_language)}}}


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    for seed, values in ((1, {"en": 80.0, "fr": 70.0, "de": 72.0}), (2, {"en": 82.0, "fr": 71.0, "de": 70.0})):
        (root / "xnli_base" / f"seed{seed}").mkdir(parents=True)
        write_results(root / "xnli_base" / f"seed{seed}", "xnli", seed, "accuracy", values,
                      extra={"train_languages": ["en"]})
    (root / "ner_en").mkdir(parents=True)
    write_results(root / "ner_en", "ner", 1, "f1", {"de": 68.0, "en": 90.12, "es": 74.25, "nl": 75.5},
                  extra={"train_languages": ["en"]})
    (root / "mlqa_base" / "seed1").mkdir(parents=True)
    write_results(root / "mlqa_base" / "seed1", "mlqa", 1, "f1", {"en": 70.0, "de": 55.6, "de-en": 50.0},
                  extra=em_extra({"en": 58.0, "de": 40.4, "de-en": 35.0}))
    (root / "tatoeba_l7").mkdir(parents=True)
    write_results(root / "tatoeba_l7", "tatoeba", 1, "accuracy", {"fr": 50.0, "de": 60.0})
    return root


def table_lines(markdown, title):
    """The Markdown table lines (header, rule, rows) under `## title`."""
    block = markdown.split(f"## {title}\n\n", 1)[1]
    return [line for line in block.split("\n\n", 1)[0].splitlines()]


def test_xnli_table_keeps_the_paper_column_order_and_seeds_as_mean_std(runs):
    markdown = render_report(collect(runs))
    lines = table_lines(markdown, "Table 1: XNLI accuracy")
    assert lines[0] == "| Model | en | fr | es | de | el | bg | ru | tr | ar | vi | th | zh | hi | sw | ur | Avg |"
    assert lines[2] == ("| XLM-R Base (paper), cross-lingual transfer | 85.8 | 79.7 | 80.7 | 78.7 | 77.5 | 79.6 | "
                        "78.1 | 74.2 | 73.8 | 76.5 | 74.6 | 76.7 | 72.4 | 66.5 | 68.3 | 76.2 |")
    assert lines[5].startswith("| XLM-R Large (paper), translate-train-all | 89.1 | 85.1 |")
    # en: 80, 82 -> 81.0 ± 1.4 (sample std); es not evaluated; Avg over the 3 languages per seed:
    # 74.0 and 74.33 -> 74.2 ± 0.2, starred (not all 15 languages).
    assert lines[6] == ("| ours: xnli_base, train en (2 seeds) | 81.0 ± 1.4 | 70.5 ± 0.7 | – | 71.0 ± 1.4 | "
                        + "– | " * 11 + "74.2 ± 0.2* |")
    assert "- `*` xnli_base: average over the 3 of 15 languages evaluated." in markdown


def test_ner_and_mlqa_tables(runs):
    markdown = render_report(collect(runs))
    ner = table_lines(markdown, "Table 2: named entity recognition F1 (CoNLL-2002/2003)")
    assert ner[0] == "| Model | en | nl | es | de | Avg |"
    assert ner[3] == "| XLM-R Base (paper), train en | 92.25 | 78.08 | 76.53 | 69.60 | 79.11 |"
    assert ner[-1] == "| ours: ner_en, train en (1 seed) | 90.12 | 75.50 | 74.25 | 68.00 | 76.97 |"

    mlqa = table_lines(markdown, "Table 3: MLQA F1 / EM (train on English SQuAD)")
    assert mlqa[0] == "| Model | en | es | de | ar | hi | vi | zh | Avg |"
    assert mlqa[2] == ("| XLM-R Base (paper) | 77.1 / 64.6 | 67.4 / 49.6 | 60.9 / 46.7 | 54.9 / 36.6 | "
                       "59.4 / 42.9 | 64.5 / 44.7 | 61.8 / 39.3 | 63.7 / 46.3 |")
    # The G-XLT pair de-en is no column of Table 3: it goes to a note.
    assert mlqa[-1] == ("| ours: mlqa_base (1 seed) | 70.0 / 58.0 | – | 55.6 / 40.4 | – | – | – | – | "
                        "62.8 / 49.2* |")
    assert "- mlqa_base also evaluated: de-en 50.0" in markdown


def test_tasks_without_a_paper_table_get_their_own(runs):
    markdown = render_report(collect(runs))
    lines = table_lines(markdown, "tatoeba (no paper table)")
    assert lines == ["| Model | de | fr | Avg |", "|---|---:|---:|---:|",
                     "| ours: tatoeba_l7 (1 seed) | 60.00 | 50.00 | 55.00 |"]
    assert markdown.index("Table 1") < markdown.index("Table 2") < markdown.index("Table 3") < markdown.index("tatoeba")


def test_report_command_writes_markdown_and_plots(runs, tmp_path):
    out = tmp_path / "report"
    assert xlmr(["report", "--results-dir", str(runs), "--out-dir", str(out)]) == 0
    assert (out / "report.md").read_text(encoding="utf-8") == render_report(collect(runs))
    for task in ("xnli", "ner", "mlqa", "tatoeba"):
        assert (out / f"report_{task}.png").stat().st_size > 10_000


def test_repeated_seed_in_a_row_and_no_results_are_errors(runs, tmp_path):
    (runs / "xnli_base" / "seed3").mkdir()
    write_results(runs / "xnli_base" / "seed3", "xnli", 1, "accuracy", {"en": 1.0})
    with pytest.raises(ValueError, match=r"row 'xnli_base' \(xnli\) has several runs with the same seed \[1, 2, 1\]"):
        collect(runs)
    with pytest.raises(ValueError, match="no results.json under"):
        collect(tmp_path / "empty")


def test_paper_rows_have_one_value_per_language():
    for table in PAPER_TABLES:
        for row in table.rows:
            assert len(row.values) == len(table.languages)
            assert row.em is None or len(row.em) == len(table.languages)
