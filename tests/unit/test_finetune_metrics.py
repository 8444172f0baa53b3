"""Per-language accuracy/F1 from summable counts, and results.json aggregation over seeds."""

import json
import random

import pytest
import torch
from fairseq.logging import metrics
from seqeval.metrics import f1_score

from fairseq_xlmr.evaluation.metrics import (
    add_language_counts,
    entity_counts,
    metric_value,
    per_language,
    reduce_language_metrics,
)
from fairseq_xlmr.evaluation.results import aggregate_seeds, format_summary, read_results, write_results


def test_entity_counts_summed_over_sentences_give_seqeval_f1():
    rng = random.Random(0)
    tags = ["O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG"]  # I-ORG after O opens an entity (IOB1)
    gold = [[rng.choice(tags) for _ in range(rng.randint(1, 15))] for _ in range(200)]
    pred = [[t if rng.random() < 0.8 else rng.choice(tags) for t in sentence] for sentence in gold]
    totals = [sum(c) for c in zip(*(entity_counts(g, p) for g, p in zip(gold, pred)))]
    ours = metric_value("f1", dict(zip(("tp", "npred", "ngold"), totals)))
    assert ours == pytest.approx(100 * f1_score(gold, pred))
    assert entity_counts(["B-PER", "I-PER", "O"], ["B-PER", "O", "O"]) == (0, 1, 1)  # a partial match is wrong


def test_reduce_logs_each_language_and_their_unweighted_average():
    languages = ["en", "de", "sw"]
    outputs = []
    for correct, lang in (([1, 1, 1, 0], [0, 0, 0, 0]), ([1, 0], [1, 1]), ([1, 1], [0, 1])):
        log = {}
        language = torch.tensor(lang)
        add_language_counts(log, "correct", languages, per_language(torch.tensor(correct), language, 3))
        add_language_counts(log, "total", languages, per_language(torch.ones(len(correct)), language, 3))
        outputs.append(log)
    with metrics.aggregate(new_root=True) as aggregator:
        reduce_language_metrics(outputs)
        stats = aggregator.get_smoothed_values()
    # en: 4/5 correct, de: 2/3; sw never seen, so it is not part of the average.
    assert stats["accuracy_en"] == 80.0 and stats["accuracy_de"] == pytest.approx(66.67)
    assert "accuracy_sw" not in stats
    assert stats["accuracy"] == pytest.approx((80 + 200 / 3) / 2, abs=0.01)
    assert not any(key.startswith("_") for key in stats)  # raw counts stay hidden


def test_results_roundtrip_and_mean_std_over_seeds(tmp_path):
    for seed, (en, de) in zip((1, 2, 3), ((80.0, 70.0), (82.0, 74.0), (84.0, 72.0))):
        run = tmp_path / f"seed{seed}"
        run.mkdir()
        write_results(run, "xnli", seed, "accuracy", {"en": en, "de": de}, extra={"train_languages": ["en"]})
    runs = [read_results(tmp_path / f"seed{seed}") for seed in (1, 2, 3)]
    assert runs[0]["average"] == 75.0 and runs[0]["split"] == "test"
    summary = aggregate_seeds(runs)
    assert summary["seeds"] == [1, 2, 3]
    assert summary["per_language"]["en"] == {"mean": 82.0, "std": 2.0, "n": 3}  # sample std
    assert summary["average"]["mean"] == pytest.approx(77.0)
    assert "en      82.00 ± 2.00" in format_summary(summary)
    json.dumps(summary)

    other = dict(runs[0], seed=4, metric="f1")
    with pytest.raises(ValueError, match="differ in metric"):
        aggregate_seeds(runs + [other])
    with pytest.raises(ValueError, match="seeds repeat"):
        aggregate_seeds(runs + [runs[0]])
