"""Fine-tuning results per run (`results.json`) and their mean ± std over seeds, as XLM-R reports them
(Conneau et al., 2020: five seeds, one model selected on the all-language dev average).

Every fine-tuning run writes one `results.json` into its save dir:

    {
      "task": "xnli",                 # benchmark name (the script's: xnli, pawsx, ner, pos, ...)
      "seed": 1,
      "metric": "accuracy",           # accuracy (XNLI, PAWS-X, POS) or f1 (NER, entity-level); percent
      "split": "test",                # the split `per_language` was measured on
      "per_language": {"en": 85.1, "de": 77.3},
      "average": 81.2,                # unweighted mean of per_language (the tables' "avg" column)
      "train_languages": ["en"],      # ["en"]: cross-lingual transfer; all languages: translate-train-all
      "checkpoint": "checkpoint_best.pt",
      "dev": {"per_language": {...}, "average": ...}   # same metric on the dev split (model selection)
    }

`task`, `seed`, `metric`, `split`, `per_language` and `average` are always present; the others
may be missing. `aggregate_seeds` turns the files of one setting (same task, metric, split and
languages) into {"per_language": {lang: {"mean", "std", "n"}}, "average": {...}, "seeds": [...]},
with the sample standard deviation (n - 1; 0 for a single seed).
"""

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from fairseq_xlmr.files import write_json
from fairseq_xlmr.tables import mean_std

RESULTS_FILE = "results.json"
REQUIRED_KEYS = ("task", "seed", "metric", "split", "per_language", "average")


def average(per_language: Dict[str, float]) -> float:
    """Unweighted mean over languages, as the paper's "avg" column."""
    if not per_language:
        raise ValueError("per_language is empty: no language was evaluated")
    return sum(per_language.values()) / len(per_language)


def write_results(path, task: str, seed: int, metric: str, per_language: Dict[str, float], split: str = "test",
                  extra: Optional[Dict] = None) -> Path:
    """Write `results.json` (into `path` if it is a directory) atomically; returns the file written."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    results = {"task": task, "seed": int(seed), "metric": metric, "split": split,
               "per_language": {lang: float(value) for lang, value in per_language.items()},
               "average": average(per_language)}
    results.update(extra or {})
    return write_json(path, results, indent=2)  # a crash never leaves a half-written results.json


def read_results(path) -> Dict:
    """Read and check a `results.json` (or the one in directory `path`)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read a results.json ({error}).") from None
    if not isinstance(results.get("per_language"), dict) or "average" not in results:
        raise ValueError(f"{path}: no `per_language` and `average`; give the results.json of an evaluation "
                         "(eval-retrieval, finetune-eval, eval-qa, analyze), not a summary.json.")
    missing = [key for key in REQUIRED_KEYS if key not in results]
    if missing:
        raise ValueError(f"{str(path)!r} lacks {missing}; it was not written by write_results.")
    return results


def find_results(root) -> List[Path]:
    """Every results.json under `root`, sorted."""
    return sorted(Path(root).rglob(RESULTS_FILE))


def aggregate_seeds(runs: Sequence[Dict]) -> Dict:
    """Mean ± std over runs of one setting (results dicts, e.g. from `read_results`).

    The runs must agree on task, metric, split, train languages and evaluated languages, and
    differ in seed; the std of the average is over the runs' averages.
    """
    if not runs:
        raise ValueError("no runs to aggregate")
    first = runs[0]
    for run in runs[1:]:
        for key in ("task", "metric", "split", "train_languages"):
            if run.get(key) != first.get(key):
                raise ValueError(f"runs differ in {key}: {first.get(key)!r} vs {run.get(key)!r}; aggregate one "
                                 "setting at a time.")
        if set(run["per_language"]) != set(first["per_language"]):
            raise ValueError(f"runs evaluated different languages: {sorted(first['per_language'])} vs "
                             f"{sorted(run['per_language'])}")
    seeds = [run["seed"] for run in runs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds repeat: {seeds}; each run of a setting needs its own seed.")
    summary = {key: first.get(key) for key in ("task", "metric", "split", "train_languages") if key in first}
    summary["seeds"] = seeds
    summary["per_language"] = {lang: mean_std([run["per_language"][lang] for run in runs])
                               for lang in first["per_language"]}
    summary["average"] = mean_std([run["average"] for run in runs])
    return summary


def format_summary(summary: Dict) -> str:
    """One line per language and the average: `en  85.10 ± 0.42`."""
    lines = [f"{summary.get('task')} {summary.get('split')} {summary.get('metric')} over seeds {summary['seeds']}:"]
    for lang, stats in list(summary["per_language"].items()) + [("avg", summary["average"])]:
        lines.append(f"  {lang:<6} {stats['mean']:6.2f} ± {stats['std']:.2f}")
    return "\n".join(lines)
