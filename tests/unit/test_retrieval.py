"""Sentence retrieval: pooling, exact ratio-margin scores, hubness, permutations, and `xlmr eval-retrieval`."""

import json
import random
import shutil

import pytest
import sentencepiece
import torch

from fairseq_xlmr.cli import main as xlmr
from fairseq_xlmr.cli import run as xlmr_run
from fairseq_xlmr.evaluation import retrieval
from fairseq_xlmr.evaluation.retrieval import accuracy, knn, normalize, parse_layers, ratio_margin_matrix, retrieve
from fairseq_xlmr.modules.pooling import center_columns as center
from fairseq_xlmr.modules.pooling import pool_sequence
from tests.fixtures.tiny_data import make_sentence
from tests.fixtures.tiny_finetune import pretrained_model_dir


def test_ratio_margin_on_a_hand_computed_example():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    # cos = [[1, .6, 0], [0, .8, 1]]; k = 2: r_x = (.8, .9), r_y = (.5, .7, .5) (mean of the 2 best over x).
    # score = cos / ((r_x + r_y) / 2): x1-y1 1 / .65, x1-y2 .6 / .75, x2-y2 .8 / .8, x2-y3 1 / .7.
    expected = torch.tensor([[1 / 0.65, 0.8, 0.0], [0.0, 1.0, 1 / 0.7]])
    assert torch.allclose(ratio_margin_matrix(x, y, k=2), expected, atol=1e-6)


def test_margin_retrieval_avoids_a_hub_that_cosine_picks():
    x = normalize(torch.eye(3))
    # y2 is close to every x (a hub); x3's nearest by cosine is y2 (0.667 > 0.636), its translation y3.
    y = normalize(torch.tensor([[1.0, 0.1, 0.1], [0.5, 1.0, 1.0], [0.6, -0.6, 0.7]]))
    assert retrieve(x, y, "cosine").tolist() == [0, 1, 1]
    assert retrieve(x, y, "margin", k=2).tolist() == [0, 1, 2]
    # With all candidates (k = pool size), the kNN-candidate search equals the full margin argmax.
    assert retrieve(x, y, "margin", k=3).tolist() == ratio_margin_matrix(x, y, k=3).argmax(1).tolist()
    assert accuracy(x, y, "cosine") == pytest.approx(200 / 3) and accuracy(x, y, "margin", k=2) == 100.0


def test_retrieval_undoes_a_permutation(monkeypatch):
    torch.manual_seed(0)
    x = torch.randn(50, 16)
    permutation = torch.randperm(50)
    y = x[permutation] + 0.01 * torch.randn(50, 16)
    inverse = torch.argsort(permutation)
    for scoring in ("cosine", "margin"):
        assert retrieve(normalize(x), normalize(y), scoring).tolist() == inverse.tolist()
    assert accuracy(x, x + 0.01 * torch.randn(50, 16)) == 100.0
    fixed_points = (permutation == torch.arange(50)).float().mean().item() * 100
    assert accuracy(x, y) == pytest.approx(fixed_points)
    # Blocked similarity products give the same neighbours as one product.
    whole = knn(normalize(x), normalize(y), 4, backend="torch")
    monkeypatch.setattr(retrieval, "BLOCK_ROWS", 7)
    blocked = knn(normalize(x), normalize(y), 4, backend="torch")
    assert torch.equal(whole[1], blocked[1]) and torch.allclose(whole[0], blocked[0])


def test_pooling_ignores_padding():
    states = torch.arange(12.0).view(1, 4, 3).repeat(2, 1, 1)  # (batch 2, seq 4, dim 3)
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    assert pool_sequence(states, mask, "mean").tolist() == [[4.5, 5.5, 6.5], [1.5, 2.5, 3.5]]
    assert pool_sequence(states, mask, "cls").tolist() == [[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]]


def test_layer_choice_is_checked():
    assert parse_layers("all", 2) == [0, 1, 2] and parse_layers("2,0", 2) == [0, 2]
    with pytest.raises(ValueError, match=r"--layers '7': the model has layers 0 \(embeddings\) to 2"):
        parse_layers("7", 2)


def test_centering_removes_a_language_offset_that_cosine_cannot_see_past():
    torch.manual_seed(0)
    content = torch.randn(40, 16)
    lang_x, lang_y = torch.zeros(16), torch.zeros(16)
    lang_x[0], lang_y[1] = 50.0, 50.0  # each language's shared direction, far larger than the content
    x, y = content + lang_x, content + lang_y + 0.01 * torch.randn(40, 16)
    assert accuracy(x, y) < 20.0  # raw cosine ranks by the query-independent x·lang_y term: a hub
    assert accuracy(center(x), center(y)) == 100.0
    assert torch.allclose(center(x).mean(0), torch.zeros(16), atol=1e-4)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return pretrained_model_dir(tmp_path_factory.mktemp("retrieval"))


def test_eval_retrieval_command_on_aligned_files(model_dir, tmp_path):
    rng = random.Random(0)
    lines = []
    while len(lines) < 10:  # distinct sentences
        sentence = make_sentence(rng, "en")
        if sentence not in lines:
            lines.append(sentence)
    data = tmp_path / "udhr"
    data.mkdir()
    (data / "en.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (data / "xx.txt").write_text("\n".join(lines[:9] + [""]) + "\n", encoding="utf-8")  # a copy, last line missing
    (data / "yy.txt").write_text("\n".join(reversed(lines)) + "\n", encoding="utf-8")  # misaligned: no fixed point
    out = tmp_path / "out"
    assert xlmr(["eval-retrieval", "--model-dir", str(model_dir), "--data-dir", str(data), "--out-dir", str(out),
                 "--report-layer", "2", "--cpu"]) == 0

    report = json.loads((out / "retrieval.json").read_text())
    assert report["layers"] == [0, 1, 2] and report["sizes"] == {"xx": 9, "yy": 10}
    for scoring in ("cosine", "margin"):
        # Identical sentences embed identically, at every layer and in both directions.
        assert report["accuracy"][scoring]["xx"] == {"to_pivot": [100.0] * 3, "from_pivot": [100.0] * 3}
        assert report["accuracy"][scoring]["yy"] == {"to_pivot": [0.0] * 3, "from_pivot": [0.0] * 3}
    results = json.loads((out / "results.json").read_text())
    assert results["per_language"] == {"xx": 100.0, "yy": 0.0} and results["average"] == 50.0
    assert (results["metric"], results["layer"], results["scoring"]) == ("accuracy", 2, "cosine")
    assert (out / "retrieval.png").stat().st_size > 10_000

    with pytest.raises(ValueError, match=r"--report-layer 7 is not among the evaluated layers \[0, 1, 2\]"):
        xlmr_run(["eval-retrieval", "--model-dir", str(model_dir), "--data-dir", str(data), "--out-dir", str(out), "--cpu"])
    # --center: a copy is still found (both sides lose the same mean) and the choice is recorded.
    assert xlmr(["eval-retrieval", "--model-dir", str(model_dir), "--data-dir", str(data), "--out-dir",
                 str(tmp_path / "centered"), "--report-layer", "2", "--languages", "yy", "--center", "--cpu"]) == 0
    centered = json.loads((tmp_path / "centered" / "retrieval.json").read_text())
    assert centered["centered"] is True and report["centered"] is False
    assert centered["accuracy"]["cosine"]["yy"]["to_pivot"] == [0.0] * 3  # reversed lines stay misaligned
    (data / "zz.txt").write_text("one line\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"zz.txt has 1 lines but en.txt has 10; aligned files must match"):
        xlmr_run(["eval-retrieval", "--model-dir", str(model_dir), "--data-dir", str(data), "--out-dir", str(out),
              "--report-layer", "2"])


def test_lexical_baseline_needs_only_the_sentencepiece_model(model_dir, tmp_path):
    spm_only = tmp_path / "spm_only"  # no model.pt: the baseline must not load one
    spm_only.mkdir()
    shutil.copy(model_dir / "sentencepiece.bpe.model", spm_only)
    processor = sentencepiece.SentencePieceProcessor(model_file=str(spm_only / "sentencepiece.bpe.model"))
    x, y = "the cat sat on the mat", "the dog sat on a log"
    ex, ey = retrieval.lexical_embedder(spm_only / "sentencepiece.bpe.model")([x], [y])
    px, py = set(processor.encode(x)), set(processor.encode(y))
    ochiai = len(px & py) / (len(px) * len(py)) ** 0.5
    assert 0 < ochiai < 1 and list(ex) == [0]
    assert torch.nn.functional.cosine_similarity(ex[0], ey[0]).item() == pytest.approx(ochiai)

    rng = random.Random(1)
    lines = list(dict.fromkeys(make_sentence(rng, "en") for _ in range(30)))[:10]
    data = tmp_path / "udhr"
    data.mkdir()
    (data / "en.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (data / "xx.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (data / "yy.txt").write_text("\n".join(reversed(lines)) + "\n", encoding="utf-8")
    out = tmp_path / "lexical"
    assert xlmr(["eval-retrieval", "--model-dir", str(spm_only), "--data-dir", str(data), "--out-dir", str(out),
                 "--pooling", "lexical", "--report-layer", "0", "--scoring", "margin"]) == 0
    report = json.loads((out / "retrieval.json").read_text())
    assert report["layers"] == [0] and report["pooling"] == "lexical"
    assert report["accuracy"]["margin"]["xx"]["to_pivot"] == [100.0]  # a copy shares every piece
    assert report["accuracy"]["margin"]["yy"]["to_pivot"] == [0.0]  # misaligned lines stay misaligned
    with pytest.raises(ValueError, match=r"--pooling lexical has one layer, 0 .*got --report-layer 7"):
        xlmr_run(["eval-retrieval", "--model-dir", str(spm_only), "--data-dir", str(data), "--out-dir", str(out),
              "--pooling", "lexical"])
