"""`xlmr report`: results.json files -> XLM-R's Tables 1-3 (Conneau et al., 2020) in Markdown, ours beside the paper's.

Every `results.json` under --results-dir (format: `fairseq_xlmr.evaluation.results`) is grouped into a
row: runs in `<name>/seed<k>/` (the layout of `xlmr finetune-seeds`) form one row `<name>`, shown as
mean ± std over seeds; any other run directory is a row of its own. `task` picks the table:
xnli -> Table 1 (accuracy), ner -> Table 2 (F1), mlqa -> Table 3 (F1 / EM); pos, gettext and udhr get the
published rows there are for them (XLM-R Base POS transfer, multilingual-e5-small Tatoeba retrieval: other test
sets than ours, shown as references); any other task (pawsx, ...) gets a table of its own without paper rows. Languages a row did not
evaluate show "–"; its Avg is the mean over the table's languages it has, starred when that is not
all of them. One PNG bar plot per table compares our rows with the paper's per language.
"""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from fairseq_xlmr.evaluation.results import find_results, read_results
from fairseq_xlmr.files import write_atomic
from fairseq_xlmr.tables import markdown_table, mean_std

MISSING = "–"


@dataclass(frozen=True)
class PaperRow:
    label: str
    setting: str  # "en" (train on English only), "all" (train on all languages), "each" (one model per language)
    values: Tuple[float, ...]  # per language, in the table's column order
    average: float
    em: Optional[Tuple[float, ...]] = None  # MLQA: exact match per language
    em_average: Optional[float] = None


@dataclass(frozen=True)
class PaperTable:
    task: str  # `task` of the results.json files that go into the table
    title: str
    languages: Tuple[str, ...]
    decimals: int
    rows: Tuple[PaperRow, ...]
    with_em: bool = False


XNLI = ("en", "fr", "es", "de", "el", "bg", "ru", "tr", "ar", "vi", "th", "zh", "hi", "sw", "ur")
NER = ("en", "nl", "es", "de")
MLQA = ("en", "es", "de", "ar", "hi", "vi", "zh")
POS = ("en", "de", "es", "it", "nl", "tr")  # the languages of `xlmr fetch-eval-data`
RETRIEVAL = ("de", "es", "fr", "it", "nl", "ru", "tr")
# Published multilingual-e5-small Tatoeba accuracy xx->en (MTEB's TatoebaBitextMining, 1,000 pairs per language):
# another test set than ours, the reference for what the model retrieves when it is not 4-bit.
E5_TATOEBA = PaperRow("multilingual-e5-small (published, MTEB Tatoeba: another test set)", "",
                      (97.9, 94.5, 92.4, 90.8, 93.7, 92.1, 90.9), 93.19)

# The paper's numbers (ACL 2020 version; docs/reference.md).
PAPER_TABLES = (
    PaperTable("xnli", "Table 1: XNLI accuracy", XNLI, 1, (
        PaperRow("XLM-R Base (paper), cross-lingual transfer", "en", (
            85.8, 79.7, 80.7, 78.7, 77.5, 79.6, 78.1, 74.2, 73.8, 76.5, 74.6, 76.7, 72.4, 66.5, 68.3), 76.2),
        PaperRow("XLM-R Large (paper), cross-lingual transfer", "en", (
            89.1, 84.1, 85.1, 83.9, 82.9, 84.0, 81.2, 79.6, 79.8, 80.8, 78.1, 80.2, 76.9, 73.9, 73.8), 80.9),
        PaperRow("XLM-R Base (paper), translate-train-all", "all", (
            85.4, 81.4, 82.2, 80.3, 80.4, 81.3, 79.7, 78.6, 77.3, 79.7, 77.9, 80.2, 76.1, 73.1, 73.0), 79.1),
        PaperRow("XLM-R Large (paper), translate-train-all", "all", (
            89.1, 85.1, 86.6, 85.7, 85.3, 85.9, 83.5, 83.2, 83.1, 83.7, 81.5, 83.7, 81.6, 78.0, 78.1), 83.6),
    )),
    PaperTable("ner", "Table 2: named entity recognition F1 (CoNLL-2002/2003)", NER, 2, (
        PaperRow("XLM-R Base (paper), train each", "each", (92.25, 90.39, 87.99, 84.60), 88.81),
        PaperRow("XLM-R Base (paper), train en", "en", (92.25, 78.08, 76.53, 69.60), 79.11),
        PaperRow("XLM-R Base (paper), train all", "all", (91.08, 89.09, 87.28, 83.17), 87.66),
        PaperRow("XLM-R Large (paper), train each", "each", (92.92, 92.53, 89.72, 85.81), 90.24),
        PaperRow("XLM-R Large (paper), train en", "en", (92.92, 80.80, 78.64, 71.40), 80.94),
        PaperRow("XLM-R Large (paper), train all", "all", (92.00, 91.60, 89.52, 84.60), 89.43),
    )),
    PaperTable("mlqa", "Table 3: MLQA F1 / EM (train on English SQuAD)", MLQA, 1, (
        PaperRow("XLM-R Base (paper)", "en", (77.1, 67.4, 60.9, 54.9, 59.4, 64.5, 61.8), 63.7,
                 (64.6, 49.6, 46.7, 36.6, 42.9, 44.7, 39.3), 46.3),
        PaperRow("XLM-R Large (paper)", "en", (80.6, 74.1, 68.5, 63.1, 69.2, 71.3, 68.0), 70.7,
                 (67.8, 56.0, 53.6, 43.5, 51.6, 50.9, 45.4), 52.7),
    ), with_em=True),
    # XTREME reports no POS row for XLM-R Base; de Vries et al. (2022, "Make the Best of Cross-lingual Transfer",
    # results/udpos-ft-10000.csv) fine-tuned it on English UD v2.8 (10,000 sentences): other treebanks than ours.
    PaperTable("pos", "POS accuracy (12 universal tags, train on English)", POS, 2, (
        PaperRow("XLM-R Base (published, de Vries et al. 2022: UD v2.8 treebanks), train en", "en",
                 (96.05, 88.61, 90.28, 87.77, 90.39, 79.12), 88.70),
    )),
    PaperTable("gettext", "Retrieval xx→en of held-out gettext pairs (accuracy)", RETRIEVAL, 2, (E5_TATOEBA,)),
    PaperTable("udhr", "Retrieval xx→en of UDHR paragraphs (accuracy)", RETRIEVAL, 2, (E5_TATOEBA,)),
)


def run(args) -> int:
    out_dir = Path(args.out_dir or args.results_dir)
    markdown = write_report(args.results_dir, out_dir, plots=not args.no_plots)
    print(markdown)
    return 0


# --------------------------------------------------------------------------- our rows


@dataclass
class OurRow:
    label: str
    setting: str
    n: int
    values: Dict[str, Dict[str, float]]  # language -> {"mean", "std", "n"}
    em: Dict[str, Dict[str, float]]  # MLQA exact match, same shape
    runs: List[Dict]  # the results.json contents, one per seed


def row_label(path: Path, root: Path) -> str:
    """`<name>` for <root>/<name>/seed<k>/results.json, else the run directory relative to root."""
    run_dir = path.parent
    if re.fullmatch(r"seed\d+", run_dir.name):
        run_dir = run_dir.parent
    relative = run_dir.relative_to(root) if run_dir != root else Path(run_dir.name)
    return str(relative)


def setting_of(results: Dict) -> str:
    """en / all / each / "" from `train_languages` (missing: unknown)."""
    train = results.get("train_languages")
    if not train:
        return ""
    if list(train) == ["en"]:
        return "en"
    return "all" if len(train) > 1 else "each"


def collect(results_dir) -> Dict[str, List[OurRow]]:
    """{task: [rows]} from every results.json under results_dir; seeds of a row become mean ± std."""
    root = Path(results_dir)
    paths = find_results(root)
    if not paths:
        raise ValueError(f"no results.json under {str(root)!r}; fine-tuning runs write one "
                         "(xlmr finetune-eval / eval-qa / eval-retrieval).")
    groups: Dict[Tuple[str, str], List[Tuple[Path, Dict]]] = {}
    for path in paths:
        results = read_results(path)
        groups.setdefault((results["task"], row_label(path, root)), []).append((path, results))
    tables: Dict[str, List[OurRow]] = {}
    for (task, label), runs in sorted(groups.items()):
        seeds = [results["seed"] for _, results in runs]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"row {label!r} ({task}) has several runs with the same seed {seeds}: "
                             f"{', '.join(str(p) for p, _ in runs)}; give each run its own directory name.")
        languages = sorted({lang for _, results in runs for lang in results["per_language"]})
        values = {lang: mean_std([r["per_language"][lang] for _, r in runs if lang in r["per_language"]])
                  for lang in languages}
        em = {lang: mean_std([_em(r)[lang] for _, r in runs if lang in _em(r)])
              for lang in languages if any(lang in _em(r) for _, r in runs)}
        tables.setdefault(task, []).append(
            OurRow(label, setting_of(runs[0][1]), len(runs), values, em, [results for _, results in runs]))
    return tables


# --------------------------------------------------------------------------- Markdown


def _fmt(value: Optional[float], decimals: int) -> str:
    return MISSING if value is None else f"{value:.{decimals}f}"


def _fmt_stats(stats: Optional[Dict[str, float]], decimals: int) -> str:
    if stats is None:
        return MISSING
    if stats["n"] > 1:
        return f"{stats['mean']:.{decimals}f} ± {stats['std']:.{decimals}f}"
    return f"{stats['mean']:.{decimals}f}"


def _em(results: Dict) -> Dict[str, float]:
    return results.get("extra_metrics", {}).get("em", {}).get("per_language", {})


def _row_average(row: OurRow, languages: Sequence[str], em: bool = False) -> Tuple[Optional[Dict], bool]:
    """Mean ± std over seeds of each run's mean over the table's languages it has; and whether all are there."""
    per_seed = []
    for results in row.runs:
        scores = _em(results) if em else results["per_language"]
        present = [scores[lang] for lang in languages if lang in scores]
        if present:
            per_seed.append(sum(present) / len(present))
    complete = all(lang in (row.em if em else row.values) for lang in languages)
    return (mean_std(per_seed) if per_seed else None), complete


def _our_label(row: OurRow) -> str:
    seeds = f"{row.n} seed{'s' if row.n > 1 else ''}"
    setting = {"en": ", train en", "all": ", train all", "each": ", train each"}.get(row.setting, "")
    return f"ours: {row.label}{setting} ({seeds})"


def render_table(table: PaperTable, rows: Sequence[OurRow]) -> str:
    """One paper table as Markdown: the paper's rows, then ours."""
    d = table.decimals
    lines = []
    for paper in table.rows:
        cells = [_fmt(v, d) for v in paper.values] + [_fmt(paper.average, d)]
        if table.with_em:
            cells = [f"{f} / {_fmt(e, d)}" for f, e in zip(cells, list(paper.em) + [paper.em_average])]
        lines.append([paper.label, *cells])
    notes = []
    for row in rows:
        average, complete = _row_average(row, table.languages)
        cells = [_fmt_stats(row.values.get(lang), d) for lang in table.languages] + [_fmt_stats(average, d)]
        if table.with_em:
            em_cells = [_fmt_stats(row.em.get(lang), d) for lang in table.languages]
            em_cells.append(_fmt_stats(_row_average(row, table.languages, em=True)[0], d))
            cells = [MISSING if f == MISSING else f"{f} / {e}" for f, e in zip(cells, em_cells)]
        if not complete and average is not None:
            cells[-1] += "*"
        lines.append([_our_label(row), *cells])
        extra = [lang for lang in row.values if lang not in table.languages]
        if extra:
            notes.append(f"- {row.label} also evaluated: " + ", ".join(
                f"{lang} {_fmt_stats(row.values[lang], d)}" for lang in extra))
        if not complete and average is not None:
            notes.append(f"- `*` {row.label}: average over the {sum(l in row.values for l in table.languages)} of "
                         f"{len(table.languages)} languages evaluated.")
    text = [f"## {table.title}", ""] + markdown_table(["Model", *table.languages, "Avg"], lines, numeric=True)
    return "\n".join(text + ([""] + notes if notes else []))


def render_other(task: str, rows: Sequence[OurRow]) -> str:
    """A task without a paper table: columns = every language any row evaluated (sorted), then Avg."""
    languages = sorted({lang for row in rows for lang in row.values})
    table = PaperTable(task, f"{task} (no paper table)", tuple(languages), 2, ())
    return render_table(table, rows)


def render_report(tables: Dict[str, List[OurRow]]) -> str:
    parts = ["# Results", "", "Generated by `xlmr report` from results.json files; ours are mean ± std over seeds."]
    for paper in PAPER_TABLES:
        if paper.task in tables:
            parts += ["", render_table(paper, tables[paper.task])]
    for task in sorted(set(tables) - {t.task for t in PAPER_TABLES}):
        parts += ["", render_other(task, tables[task])]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- plots


def plot_table(table: PaperTable, rows: Sequence[OurRow], path: Path) -> None:
    """Grouped bars per language: the paper rows of our settings (or the first setting) and ours, ± std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    settings = {row.setting for row in rows}
    paper_rows = [p for p in table.rows if p.setting in settings] or [p for p in table.rows
                                                                         if p.setting == table.rows[0].setting]
    series = [(p.label, list(p.values), [0.0] * len(p.values), 0.35) for p in paper_rows]
    for row in rows:
        stats = [row.values.get(lang) for lang in table.languages]
        series.append((_our_label(row), [s["mean"] if s else np.nan for s in stats],
                       [s["std"] if s else 0.0 for s in stats], 0.9))
    x = np.arange(len(table.languages))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(table.languages) * max(1, len(series) / 2)), 4.5))
    for i, (label, means, stds, alpha) in enumerate(series):
        ax.bar(x - 0.4 + (i + 0.5) * width, means, width, yerr=stds if any(stds) else None, alpha=alpha,
               label=label, capsize=2)
    ax.set_xticks(x)
    ax.set_xticklabels(table.languages)
    ax.set_ylabel("F1" if table.task in ("ner", "mlqa") else "accuracy" if table.task == "xnli" else "score")
    ax.set_title(table.title)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(results_dir, out_dir, plots: bool = True) -> str:
    """Write report.md (+ report_<task>.png per table) into out_dir; return the Markdown."""
    tables = collect(results_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = render_report(tables)
    write_atomic(out_dir / "report.md", markdown)
    if plots:
        papers = {t.task: t for t in PAPER_TABLES}
        for task, rows in tables.items():
            languages = tuple(sorted({lang for row in rows for lang in row.values}))
            table = papers.get(task) or PaperTable(task, task, languages, 2, ())
            plot_table(table, rows, out_dir / f"report_{task}.png")
    return markdown
