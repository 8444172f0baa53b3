"""`xlmr spread`: where one model's results stand among baseline runs (e.g. K random inits of it).

    xlmr spread demo/transfer/spread/udhr/model/results.json \
        --baselines demo/transfer/spread/udhr/random*/results.json --out demo/transfer/spread/udhr.md

One random init is one draw: twelve of them retrieve 23.5 % to 49.0 % of the demo's French UDHR
paragraphs. Per language and for the average this prints the baselines' mean ± std, min and max and how
many of them the model beats, as a Markdown table (and writes it, with the numbers as JSON beside it).
Inputs are the `results.json` files of eval-retrieval, finetune-eval and eval-qa (`per_language` +
`average`); higher must be better ("beats" counts baselines strictly below the model).
"""

import json
import statistics
from pathlib import Path
from typing import Dict, List

from fairseq_xlmr.atomic import write_atomic


def read_results(path) -> Dict[str, float]:
    """{language: score, ..., "average": score} of one results.json."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read a results.json ({error}).") from None
    if not isinstance(data.get("per_language"), dict) or "average" not in data:
        raise ValueError(f"{path}: no `per_language` and `average`; give the results.json of an evaluation "
                         "(eval-retrieval, finetune-eval, eval-qa), not a summary.json.")
    return {**{lang: float(v) for lang, v in data["per_language"].items()}, "average": float(data["average"])}


def spread(model: Dict[str, float], baselines: List[Dict[str, float]]) -> Dict[str, Dict[str, float]]:
    """{language: {"model", "mean", "std", "min", "max", "below" (baselines the model beats), "of"}}."""
    out = {}
    for lang, score in model.items():
        values = [baseline[lang] for baseline in baselines]
        out[lang] = {"model": score, "mean": statistics.fmean(values),
                     "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                     "min": min(values), "max": max(values),
                     "below": sum(value < score for value in values), "of": len(values)}
    return out


def markdown(table: Dict[str, Dict[str, float]], title: str) -> str:
    from fairseq_xlmr.analysis.analyze import markdown_table

    langs = [lang for lang in table if lang != "average"] + ["average"]
    rows = [["model"] + [f"{table[l]['model']:.1f}" for l in langs],
            ["baselines mean ± std"] + [f"{table[l]['mean']:.1f} ± {table[l]['std']:.1f}" for l in langs],
            ["baselines min-max"] + [f"{table[l]['min']:.1f}-{table[l]['max']:.1f}" for l in langs],
            ["model beats"] + [f"{table[l]['below']}/{table[l]['of']}" for l in langs]]
    return "\n".join([title, ""] + markdown_table([""] + langs, rows)) + "\n"


def add_arguments(parser) -> None:
    parser.add_argument("model", help="the model's results.json")
    parser.add_argument("--baselines", nargs="+", required=True,
                        help="two or more results.json of baseline runs (e.g. one per random-init seed)")
    parser.add_argument("--out", default=None, help="write the Markdown table here and its numbers as .json beside it")
    parser.add_argument("--title", default=None, help="line above the table (default: the model's path)")


def main(args) -> int:
    if len(args.baselines) < 2:
        raise ValueError(f"--baselines has {len(args.baselines)} file; a spread needs at least two runs.")
    model = read_results(args.model)
    baselines = [read_results(path) for path in args.baselines]
    for path, baseline in zip(args.baselines, baselines):
        missing = sorted(set(model) - set(baseline))
        if missing:
            raise ValueError(f"{path} has no score for {', '.join(missing)}, which {args.model} has; compare runs "
                             "of the same evaluation and languages.")
    table = spread(model, baselines)
    text = markdown(table, args.title or f"{args.model} among {len(baselines)} baseline runs:")
    print(text, end="")
    if args.out:
        out = Path(args.out)
        write_atomic(out.with_suffix(".json"), json.dumps({"model": str(args.model), "baselines": [
            str(p) for p in args.baselines], "spread": table}, indent=1) + "\n")
        write_atomic(out, text)
        print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0
