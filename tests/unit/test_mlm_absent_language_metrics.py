"""`xlmr_mlm`'s reduce_metrics over fairseq log intervals in which a language is absent."""

import math

import pytest
import torch
from fairseq.logging import metrics

from fairseq_xlmr.criterions.xlmr_mlm import XlmrMlmCriterion


def _log(**langs):
    """A logging output as the criterion writes it: {lang: (loss sum in nats, predicted tokens)}."""
    log = {"loss": torch.tensor(sum(loss for loss, _ in langs.values())),
           "sample_size": torch.tensor(sum(size for _, size in langs.values())), "ntokens": 100, "nsentences": 4}
    for lang in ("en", "bg"):
        loss, size = langs.get(lang, (0.0, 0))
        log["loss_" + lang] = torch.tensor(loss)
        log["sample_size_" + lang] = torch.tensor(size)
    return log


def test_a_language_absent_from_an_interval_logs_neither_loss_nor_ppl():
    # As fairseq's train loop: an epoch aggregator around interval aggregators reset after each log line.
    with metrics.aggregate(new_root=True) as epoch, metrics.aggregate() as interval:
        XlmrMlmCriterion.reduce_metrics([_log(en=(20.0, 10), bg=(30.0, 10))])
        first = interval.get_smoothed_values()
        assert first["loss_bg"] == pytest.approx(3.0 / math.log(2), abs=1e-3)
        assert first["ppl_bg"] == pytest.approx(2 ** first["loss_bg"], rel=1e-2)
        interval.reset()

        XlmrMlmCriterion.reduce_metrics([_log(en=(10.0, 10))])  # no bg in this interval
        second = interval.get_smoothed_values()
        # Before the fix: "loss_bg": None next to "ppl_bg": 0.0.
        assert "loss_bg" not in second and "ppl_bg" not in second
        assert second["loss_en"] == pytest.approx(1.0 / math.log(2), abs=1e-3)
        assert second["ppl_en"] == pytest.approx(2 ** (1.0 / math.log(2)), rel=1e-2)
        interval.state_dict()  # the key order bookkeeping stays consistent (it reads every priority entry)
        # The epoch aggregator saw bg in the first interval: it keeps bg's average over the epoch.
        assert epoch.get_smoothed_values()["loss_bg"] == pytest.approx(3.0 / math.log(2), abs=1e-3)
        interval.reset()

        # bg comes back in a later interval, in its second update only: it is logged again, from that update.
        XlmrMlmCriterion.reduce_metrics([_log(en=(10.0, 10))])
        XlmrMlmCriterion.reduce_metrics([_log(en=(10.0, 10), bg=(10.0, 5))])
        third = interval.get_smoothed_values()
        assert third["loss_bg"] == pytest.approx(2.0 / math.log(2), abs=1e-3)
        assert third["ppl_bg"] == pytest.approx(2 ** third["loss_bg"], rel=1e-2)
        assert list(third).index("loss_bg") < list(third).index("ppl_bg")  # losses before their perplexities


def test_a_language_present_earlier_in_the_same_interval_is_kept():
    with metrics.aggregate(new_root=True) as interval:
        XlmrMlmCriterion.reduce_metrics([_log(en=(20.0, 10), bg=(30.0, 10))])
        XlmrMlmCriterion.reduce_metrics([_log(en=(20.0, 10))])
        stats = interval.get_smoothed_values()
    assert stats["loss_bg"] == pytest.approx(3.0 / math.log(2), abs=1e-3)
    assert stats["ppl_bg"] == pytest.approx(2 ** stats["loss_bg"], rel=1e-2)
