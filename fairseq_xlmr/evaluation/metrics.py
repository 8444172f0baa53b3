"""Per-language fine-tuning metrics, as XLM-R reports them (Conneau et al., 2020, Tables 1-2): accuracy,
and entity-level F1 scored like seqeval/conlleval, each per language and as the unweighted average
over languages (the tables' "avg" column, and the dev value the paper selected checkpoints on).

Criteria put summable counts per language in their logging outputs (`correct_<lang>`,
`total_<lang>`; for F1 also `tp_<lang>`, `npred_<lang>`, `ngold_<lang>`), so that outputs of
several workers and batches add up; `reduce_language_metrics` turns the sums into `<metric>_<lang>`
and `<metric>` (percent).
"""

import math
from typing import Dict, List, Sequence, Tuple

import torch
from fairseq import utils
from fairseq.logging import metrics
from fairseq.logging.meters import safe_round

# The counts each metric is computed from; `total` (scored items) says whether a language is present.
METRIC_COUNTS = {"accuracy": ("correct", "total"), "f1": ("tp", "npred", "ngold")}


def per_language(values: torch.Tensor, language: torch.Tensor, num_languages: int) -> torch.Tensor:
    """Sum `values` (n,) by `language` (n,) positions -> (num_languages,), without leaving the device."""
    return values.new_zeros(num_languages, dtype=torch.long).index_add_(0, language, values.long())


def add_language_counts(logging_output: Dict, name: str, languages: Sequence[str], counts: torch.Tensor) -> None:
    """Store `counts` (num_languages,) as `<name>_<lang>` for every language (also zeros: workers' keys must match)."""
    for i, lang in enumerate(languages):
        logging_output[f"{name}_{lang}"] = counts[i]


def metric_value(metric: str, counts: Dict[str, float]) -> float:
    """accuracy = 100 correct / total; f1 = 100 · 2 tp / (npred + ngold), 0 without any entity (as seqeval)."""
    if metric == "accuracy":
        return 100.0 * counts["correct"] / counts["total"] if counts["total"] else 0.0
    if metric == "f1":
        denominator = counts["npred"] + counts["ngold"]
        return 100.0 * 2 * counts["tp"] / denominator if denominator else 0.0
    raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRIC_COUNTS)}")


def entity_counts(gold: Sequence[str], predicted: Sequence[str]) -> Tuple[int, int, int]:
    """(true positives, predicted entities, gold entities) of one sentence's BIO/IOB1/IOBES labels.

    Entities are seqeval's (its default, conlleval-compatible chunking); summing the counts over
    sentences and applying `metric_value("f1", ...)` gives seqeval's micro F1 for the corpus.
    """
    from seqeval.metrics.sequence_labeling import get_entities

    gold_entities = set(get_entities(list(gold)))
    predicted_entities = set(get_entities(list(predicted)))
    return len(gold_entities & predicted_entities), len(predicted_entities), len(gold_entities)


def _sum(meters, key) -> float:
    return float(utils.item(meters[key].sum)) if key in meters else 0.0


def _languages(meters) -> List[str]:
    prefix = "_total_"
    return sorted(key[len(prefix):] for key in meters if key.startswith(prefix) and _sum(meters, key) > 0)


def _language_metric(meters, metric: str, lang: str) -> float:
    return metric_value(metric, {name: _sum(meters, f"_{name}_{lang}") for name in METRIC_COUNTS[metric]})


def _average_metric(meters, metric: str) -> float:
    values = [_language_metric(meters, metric, lang) for lang in _languages(meters)]
    return sum(values) / len(values) if values else 0.0


def reduce_loss_and_language_metrics(logging_outputs: Sequence[Dict]) -> None:
    """What the fine-tuning criteria log: `loss` in bits per scored item, then the language metrics."""
    loss = sum(log.get("loss", 0) for log in logging_outputs)
    sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
    metrics.log_scalar("loss", loss / max(sample_size, 1) / math.log(2), sample_size, round=3)
    reduce_language_metrics(logging_outputs)


def reduce_language_metrics(logging_outputs: Sequence[Dict]) -> None:
    """Log `<metric>_<lang>` for every language scored so far and `<metric>`, their unweighted mean.

    Counts are kept as hidden sums (`_correct_en`, ...), so the values are exact over a whole
    validation run or log interval, not averages of per-batch values.
    """
    keys = {key for log in logging_outputs for key in log}
    counted = {name for names in METRIC_COUNTS.values() for name in names}
    sums = {}
    for key in keys:
        name, _, lang = key.partition("_")
        if name in counted and lang:
            sums[key] = sum(log.get(key, 0) for log in logging_outputs)
    for key, value in sums.items():
        metrics.log_scalar_sum("_" + key, value)
    languages = sorted(key[len("total_"):] for key, value in sums.items()
                       if key.startswith("total_") and utils.item(value) > 0)
    for metric, names in METRIC_COUNTS.items():
        present = [lang for lang in languages if all(f"{name}_{lang}" in sums for name in names)]
        for lang in present:
            metrics.log_derived(f"{metric}_{lang}",
                                lambda meters, lang=lang, metric=metric: safe_round(_language_metric(meters, metric, lang), 2))
        if present:
            metrics.log_derived(metric, lambda meters, metric=metric: safe_round(_average_metric(meters, metric), 2))
