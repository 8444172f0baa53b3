"""`xlmr spread`: where one model's results stand among baseline runs (e.g. K random inits of it).

    xlmr spread demo/transfer/spread/udhr/model/results.json \
        --baselines demo/transfer/spread/udhr/random*/results.json --out demo/transfer/spread/udhr.md

One random init is one draw: twelve of them retrieve 23.5 % to 49.0 % of the demo's French UDHR
paragraphs. Per language and for the average this prints the baselines' mean ± std, min and max and how
many of them the model beats, as a Markdown table (and writes it, with the numbers as JSON beside it).
Inputs are the `results.json` files of eval-retrieval, finetune-eval, eval-qa and analyze bli/cka
(`per_language` + `average`), or run directories of `xlmr finetune-seeds` (`seed<k>/results.json`), read as
their mean over seeds; higher must be better ("beats" counts baselines strictly below the model). With seeds,
the table also says whether the model is ahead of the best baseline by more than the seeds' spread: its
margin over the best baseline's mean exceeds the largest seed standard deviation of the model and of that
baseline.
"""

from pathlib import Path
from typing import Dict, List, Tuple

from fairseq_xlmr.evaluation.results import read_results
from fairseq_xlmr.files import write_atomic, write_json
from fairseq_xlmr.tables import markdown_table, mean_std


def scores(path) -> Dict[str, float]:
    """{language: score, ..., "average": score} of one results.json."""
    results = read_results(path)
    return {**{lang: float(v) for lang, v in results["per_language"].items()}, "average": float(results["average"])}


def read_run(path) -> Tuple[Dict[str, float], Dict[str, float]]:
    """(mean, seed std) per language and average of a results.json (std 0) or a finetune-seeds run directory."""
    path = Path(path)
    files = sorted(path.glob("seed*/results.json")) if path.is_dir() else [path]
    if path.is_dir() and not files:
        files = [path / "results.json"]
    runs = [scores(file) for file in files]
    keys = set(runs[0]).intersection(*runs)
    stats = {key: mean_std([run[key] for run in runs]) for key in runs[0] if key in keys}
    return {key: s["mean"] for key, s in stats.items()}, {key: s["std"] for key, s in stats.items()}


def spread(model: Dict[str, float], baselines: List[Dict[str, float]], model_std: Dict[str, float] = None,
           baseline_stds: List[Dict[str, float]] = None) -> Dict[str, Dict[str, float]]:
    """{language: {"model", "mean", "std", "min", "max", "below" (baselines the model beats), "of", "margin" (over
    the best baseline), "seed_std" (the largest seed std of the model and that baseline), "clear" (margin >
    seed_std)}}; stds are over seeds (0 for single runs)."""
    out = {}
    for lang, score in model.items():
        values = [baseline[lang] for baseline in baselines]
        best = max(range(len(values)), key=values.__getitem__)
        seed_std = max((model_std or {}).get(lang, 0.0), (baseline_stds or [{}] * len(values))[best].get(lang, 0.0))
        stats = mean_std(values)
        out[lang] = {"model": score, "mean": stats["mean"], "std": stats["std"], "min": min(values), "max": max(values),
                     "below": sum(value < score for value in values), "of": len(values),
                     "margin": score - values[best], "seed_std": seed_std, "clear": score - values[best] > seed_std}
    return out


def markdown(table: Dict[str, Dict[str, float]], title: str) -> str:
    langs = [lang for lang in table if lang != "average"] + ["average"]
    # Scores on a 0-1 scale (CKA) need more digits than percentages.
    d = 3 if all(abs(table[l][key]) <= 1 for l in langs for key in ("model", "min", "max")) else 1
    rows = [["model"] + [f"{table[l]['model']:.{d}f}" for l in langs],
            ["baselines mean ± std"] + [f"{table[l]['mean']:.{d}f} ± {table[l]['std']:.{d}f}" for l in langs],
            ["baselines min-max"] + [f"{table[l]['min']:.{d}f}-{table[l]['max']:.{d}f}" for l in langs],
            ["model beats"] + [f"{table[l]['below']}/{table[l]['of']}" for l in langs]]
    if any(table[l]["seed_std"] for l in langs):
        rows.append(["margin over the best (seed std)"] + [
            f"{table[l]['margin']:+.{d}f} ({table[l]['seed_std']:.{d}f}){'' if table[l]['clear'] else ' not clear'}"
            for l in langs])
    return "\n".join([title, ""] + markdown_table([""] + langs, rows)) + "\n"


def run(args) -> int:
    if len(args.baselines) < 2:
        raise ValueError(f"--baselines has {len(args.baselines)} file; a spread needs at least two runs.")
    model, model_std = read_run(args.model)
    baselines, baseline_stds = zip(*[read_run(path) for path in args.baselines])
    for path, baseline in zip(args.baselines, baselines):
        missing = sorted(set(model) - set(baseline))
        if missing:
            raise ValueError(f"{path} has no score for {', '.join(missing)}, which {args.model} has; compare runs "
                             "of the same evaluation and languages.")
    table = spread(model, list(baselines), model_std, list(baseline_stds))
    text = markdown(table, args.title or f"{args.model} among {len(baselines)} baseline runs:")
    print(text, end="")
    if args.out:
        out = Path(args.out)
        write_json(out.with_suffix(".json"), {"model": str(args.model), "baselines": [str(p) for p in args.baselines],
                                              "spread": table})
        write_atomic(out, text)
        print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0
