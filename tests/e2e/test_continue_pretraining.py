"""scripts/continue_pretraining.sh on a tiny model: MLM from the model dir on a new corpus, perplexity of the start
and the end on the same masks, retrieval before and after; a corpus in another vocabulary is refused."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_analyze import distinct_sentences
from tests.fixtures.tiny_finetune import pretrained_model_dir

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "continue_pretraining.sh"

pytestmark = pytest.mark.slow


def test_continued_pretraining_lowers_perplexity_and_reports_retrieval(tmp_path):
    model = pretrained_model_dir(tmp_path / "pretrained")
    corpus = tmp_path / "corpus"
    for sub in ("mono", "udhr", "heldout"):
        (corpus / sub).mkdir(parents=True)
    for lang, seed in (("en", 1), ("de", 2)):
        text = "\n".join(distinct_sentences(lang, 200, seed)) + "\n"
        (corpus / "mono" / f"{lang}.txt").write_text(text, encoding="utf-8")
        (corpus / "udhr" / f"{lang}.txt").write_text(text, encoding="utf-8")
        (corpus / "heldout" / f"tatoeba.de-eng.{'eng' if lang == 'en' else 'de'}").write_text(text, encoding="utf-8")
    out = tmp_path / "adapt"
    env = {**os.environ, "OUT": str(out), "CORPUS": str(corpus), "LANGS": "en,de", "UPDATES": "30", "LR": "1e-3",
           "WARMUP": "5", "TOKENS": "64", "VALID_LINES": "40", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(SCRIPT), str(model)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    ppl = json.loads((out / "ppl.json").read_text())
    for lang in ("en", "de"):
        assert ppl["trained"][lang]["ppl"] < ppl["start"][lang]["ppl"]
        assert ppl["trained"][lang]["predicted"] == ppl["start"][lang]["predicted"]  # the same masks
    for bench in ("gettext", "udhr"):
        for when in ("start", "end"):
            results = json.loads((out / "retrieval" / bench / when / "results.json").read_text())
            assert set(results["per_language"]) == {"de"} and results["layer"] == 1
    report = (out / "report.md").read_text()
    assert "| lang | ppl start | ppl trained |" in report and "ours: gettext/end" in report

    bad = subprocess.run(["bash", str(SCRIPT), str(model)], env={**env, "UPDATES": "0"}, capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "UPDATES=0 must be a positive whole number" in bad.stderr
