"""Ablation switches of "Emerging Cross-lingual Structure" (Conneau, Wu et al., 2020): no anchor points
(disjoint vocabularies), language-specific embeddings and bottom layers ("Sep"), domain mismatch."""

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fairseq.data import Dictionary
from fairseq.data.indexed_dataset import MMapIndexedDataset
from fairseq.models import ARCH_CONFIG_REGISTRY

from fairseq_xlmr.cli import main as xlmr
from fairseq_xlmr.models.xlmr_encoder import XlmrEncoderModel, XlmrLanguageSpecificLayer
from fairseq_xlmr.preprocess.binarize_disjoint import binarize_disjoint
from fairseq_xlmr.preprocess.corpora import parse_mono_sources, select_mono_sources
from fairseq_xlmr.preprocess.spm import DISJOINT_SEPARATOR, disjoint_piece
from tests.fixtures.fairseq_run import USER_DIR, fairseq_train, json_stats, tiny_model_args
from tests.fixtures.tiny_data import make_tiny_corpus

LANGUAGES = ["en", "de", "ru"]


# --------------------------------------------------------------------------- no anchor points


@pytest.fixture(scope="module")
def disjoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("disjoint")
    # "ru" shares no script with en/de, but en and de share many strings ("Haus", "mit", "a", "."):
    # exactly the anchors the ablation must remove.
    corpus = make_tiny_corpus(root / "corpus", languages=LANGUAGES, lines=300)
    (corpus / "de.txt").write_text((corpus / "de.txt").read_text() + "the cat and a dog.\n" * 20)
    # Through the real `xlmr` entry points, as a user runs them.
    assert xlmr(["train-spm", "--disjoint-vocab", "--corpus-dir", str(corpus), "--languages", ",".join(LANGUAGES),
                 "--vocab-size", "240", "--num-threads", "1", "--out-dir", str(root / "spm")]) == 0
    assert xlmr(["binarize", "--corpus-dir", str(corpus), "--spm-model", str(root / "spm"), "--dest-dir",
                 str(root / "data-bin"), "--valid-lines", "20", "--workers", "1"]) == 0
    return root


def _ids(data_bin: Path, lang: str, split: str) -> np.ndarray:
    dataset = MMapIndexedDataset(str(data_bin / lang / split))
    return np.concatenate([dataset[i].numpy() for i in range(len(dataset))])


def test_disjoint_vocab_gives_each_language_its_own_id_range(disjoint):
    joint = Dictionary.load(str(disjoint / "spm" / "dict.txt"))
    manifest = json.loads((disjoint / "spm" / "disjoint_vocab.json").read_text())
    assert manifest["languages"] == LANGUAGES and manifest["pieces_per_language"] == 80
    used = {}
    for lang in LANGUAGES:
        ids = np.concatenate([_ids(disjoint / "data-bin", lang, split) for split in ("train", "valid")])
        ordinary = set(ids[ids >= joint.nspecial].tolist())
        used[lang] = ordinary
        # Every ordinary id carries this language's suffix and lies in one contiguous range.
        assert all(joint[i].endswith(DISJOINT_SEPARATOR + lang) for i in ordinary)
        assert max(ordinary) - min(ordinary) < 80
    # The ablation's point: no id but the specials is shared by two languages ...
    for a in LANGUAGES:
        for b in LANGUAGES:
            if a < b:
                assert not used[a] & used[b], (a, b)
    # ... although both languages' own models do have common pieces (the anchors a shared vocabulary gives).
    en = {joint[i][:-3] for i in used["en"]}
    de = {joint[i][:-3] for i in used["de"]}
    assert len(en & de) >= 3


def test_disjoint_binarize_round_trips_through_each_language_model(disjoint):
    import sentencepiece as spm

    joint = Dictionary.load(str(disjoint / "spm" / "dict.txt"))
    sp = spm.SentencePieceProcessor(model_file=str(disjoint / "spm" / "de" / "sentencepiece.bpe.model"))
    first = MMapIndexedDataset(str(disjoint / "data-bin" / "de" / "train"))[0].tolist()
    assert first[-1] == joint.eos()
    pieces = [joint[i][: -len(DISJOINT_SEPARATOR + "de")] for i in first[:-1]]
    lines = (disjoint / "corpus" / "de.txt").read_text().splitlines()
    assert sp.decode_pieces(pieces) in lines
    assert disjoint_piece("\u2581Haus", "de") == "\u2581Haus|de"  # keeps the word-start mark first


def test_disjoint_binarize_rejects_a_language_without_model(disjoint, tmp_path):
    with pytest.raises(ValueError, match="--languages zz have no model"):
        binarize_disjoint(disjoint / "corpus", disjoint / "spm", tmp_path / "out", languages=["en", "zz"], quiet=True)
    with pytest.raises(ValueError, match="not one written by `xlmr train-spm --disjoint-vocab`"):
        binarize_disjoint(disjoint / "corpus", disjoint / "corpus", tmp_path / "out", quiet=True)


def test_disjoint_vocab_trains_with_xlmr_mlm(disjoint, tmp_path):
    messages = fairseq_train([disjoint / "data-bin", "--user-dir", USER_DIR, "--task", "xlmr_mlm",
                              "--criterion", "xlmr_mlm", *tiny_model_args(), "--max-update", "60",
                              "--save-dir", tmp_path / "ckpt", "--no-save"])
    losses = [float(s["loss"]) for s in json_stats(messages, "loss_en") if "loss" in s]
    # Down from the uniform guess over all 236 ids (7.9 bits), towards one language's 77 pieces (6.3 bits).
    assert np.mean(losses[-10:]) < np.mean(losses[:5]) - 0.25


# --------------------------------------------------------------------------- Sep: embeddings and layers


def _build(**overrides):
    cfg = argparse.Namespace(**overrides)
    ARCH_CONFIG_REGISTRY["xlmr_debug"](cfg)
    dictionary = Dictionary()
    for i in range(95):
        dictionary.add_symbol(f"p{i}")
    dictionary.add_symbol("<mask>")
    task = SimpleNamespace(source_dictionary=dictionary, languages=LANGUAGES)
    return XlmrEncoderModel.build_model(cfg, task)


def _grads_of_one_language_sample(model, lang: int):
    model.zero_grad()
    torch.manual_seed(0)
    tokens = torch.randint(4, 95, (1, 8))
    tokens[:, 0] = 0
    logits, _ = model(tokens, lang_id=torch.tensor([lang]))
    logits.sum().backward()


def _touched(module) -> bool:
    return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_sep_embeddings_and_bottom_layers_take_gradients_only_from_their_language():
    model = _build(language_specific_embeddings=True, language_specific_layers=1, dropout=0.0,
                   attention_dropout=0.0)
    encoder = model.encoder.sentence_encoder
    assert isinstance(encoder.layers[0], XlmrLanguageSpecificLayer)
    assert not isinstance(encoder.layers[1], XlmrLanguageSpecificLayer)  # K = 1 of 2 layers
    _grads_of_one_language_sample(model, lang=1)  # a "de" sample
    tables, bottom = encoder.embed_tokens_by_language, encoder.layers[0].per_language
    assert _touched(tables[1]) and _touched(bottom[1])
    for other in (0, 2):
        assert not _touched(tables[other]) and not _touched(bottom[other])
    assert _touched(encoder.layers[1])  # the shared top layer learns from every language


def test_sep_routes_a_mixed_batch_like_separate_samples():
    model = _build(language_specific_embeddings=True, language_specific_layers=2).eval()
    torch.manual_seed(1)
    tokens = torch.randint(4, 95, (3, 7))
    tokens[:, 0] = 0
    lang_id = torch.tensor([2, 0, 2])
    together, _ = model(tokens, lang_id=lang_id)
    alone = torch.cat([model(tokens[i:i + 1], lang_id=lang_id[i:i + 1])[0] for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-5)
    # A different language is a different model: same tokens, other output.
    other, _ = model(tokens, lang_id=torch.tensor([1, 1, 1]))
    assert not torch.allclose(together, other, atol=1e-3)
    with pytest.raises(ValueError, match="lang_id"):
        model(tokens)


def test_sep_options_off_keep_the_state_dict_names():
    plain = set(_build().state_dict())
    assert set(_build(language_specific_embeddings=False, language_specific_layers=0).state_dict()) == plain
    sep = set(_build(language_specific_embeddings=True, language_specific_layers=1).state_dict())
    assert "encoder.sentence_encoder.embed_tokens_by_language.2.weight" in sep
    assert "encoder.sentence_encoder.layers.0.per_language.2.fc1.weight" in sep
    assert "encoder.sentence_encoder.layers.1.fc1.weight" in sep


def test_sep_layers_beyond_the_model_are_rejected():
    with pytest.raises(ValueError, match=r"language_specific_layers` must be in \[0, encoder_layers=2\], got 3"):
        _build(language_specific_layers=3)


def test_sep_trains_through_the_task_lang_ids(disjoint, tmp_path):
    messages = fairseq_train([disjoint / "data-bin", "--user-dir", USER_DIR, "--task", "xlmr_mlm",
                              "--criterion", "xlmr_mlm", *tiny_model_args(), "--max-update", "20",
                              "--language-specific-embeddings", "--language-specific-layers", "1",
                              "--save-dir", tmp_path / "ckpt"])
    losses = [float(s["loss"]) for s in json_stats(messages, "loss_ru") if "loss" in s]
    assert losses[-1] < losses[0]
    state = torch.load(tmp_path / "ckpt" / "checkpoint_last.pt", weights_only=False)["model"]
    assert state["encoder.sentence_encoder.embed_tokens_by_language.2.weight"].shape[0] == 4 + 3 * 77 + 1


# --------------------------------------------------------------------------- domain mismatch


def test_mono_sources_keep_one_corpus_per_language():
    mono = {"en": {"A fortune.": "fortunes", "Open file": "gettext", "Another fortune.": "fortunes"},
            "de": {"Ein Spruch.": "fortunes", "Datei öffnen": "gettext"},
            "fr": {"Ouvrir": "gettext"}}
    chosen = parse_mono_sources("en=fortunes,de=gettext", ("fortunes", "gettext", "udhr"))
    assert chosen == {"en": "fortunes", "de": "gettext"}
    out = select_mono_sources(mono, chosen)
    assert list(out["en"]) == ["A fortune.", "Another fortune."]
    assert list(out["de"]) == ["Datei öffnen"]
    assert out["fr"] == mono["fr"]  # languages not named keep every source
    with pytest.raises(ValueError, match="--mono-sources entry 'de=web'"):
        parse_mono_sources("de=web", ("fortunes", "gettext", "udhr"))
    with pytest.raises(ValueError, match="leaves no line"):
        select_mono_sources(mono, {"fr": "fortunes"})


# --------------------------------------------------------------------------- hydra deltas


@pytest.mark.parametrize("name, expected", [
    ("sep_emb", {"model.language_specific_embeddings": True, "model.language_specific_layers": 0}),
    ("sep_emb_layers", {"model.language_specific_embeddings": True, "model.language_specific_layers": 2}),
    ("no_anchors", {"task.languages": "en,de", "model.language_specific_embeddings": False}),
    ("domain_mismatch", {"task.languages": "en,de"}),
])
def test_ablation_configs_change_only_their_keys_of_the_demo_recipe(name, expected):
    from omegaconf import OmegaConf

    from tests.unit.test_hydra_configs import compose_like_fairseq

    demo, _ = compose_like_fairseq("pretrain", "demo")
    ablation, _ = compose_like_fairseq("pretrain", "demo", [f"+ablation={name}"])
    for key, value in expected.items():
        assert OmegaConf.select(ablation, key) == value
    flat = lambda cfg: {f"{g}.{k}": v for g in ("model", "task", "optimization", "dataset")  # noqa: E731
                        for k, v in OmegaConf.to_container(cfg[g]).items()}
    changed = {k for k, v in flat(ablation).items() if flat(demo).get(k) != v}
    assert changed <= set(expected), changed  # deltas only: the recipe itself is demo.yaml's
