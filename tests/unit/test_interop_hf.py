"""HF interop: exported models give our outputs, export -> import is bit-identical, same token ids."""

import argparse
import json
from types import SimpleNamespace

import pytest
import torch

transformers = pytest.importorskip("transformers")

from fairseq import checkpoint_utils  # noqa: E402
from fairseq.models import ARCH_CONFIG_REGISTRY  # noqa: E402

from fairseq_xlmr import checkpoint, cli, hub  # noqa: E402
from fairseq_xlmr.interop import hf_export, hf_import, hf_mapping  # noqa: E402
from fairseq_xlmr.models.xlmr_encoder import XlmrEncoderModel  # noqa: E402
from tests.fixtures.tiny_data import make_tiny_corpus, make_tiny_spm  # noqa: E402

FAMILIES = {hf_mapping.POST_LN: {}, hf_mapping.PRE_LN: {"encoder_normalize_before": True, "layernorm_embedding": False}}
HEADS = {"": "ForMaskedLM", "xnli": "ForSequenceClassification", "ner": "ForTokenClassification",
         "squad_qa": "ForQuestionAnswering"}
SAMPLE = ["The cat sees a red house.", "Кот видит большой дом.", "猫看房子。", "Der Hund läuft über die Brücke.",
          "  Mixed: кот, dog 和 猫 — 123 λόγος عربى  "]  # the last: unseen scripts, digits, extra spaces


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    root = tmp_path_factory.mktemp("vocab")
    return make_tiny_spm(root / "spm", make_tiny_corpus(root / "corpus", lines=100), vocab_size=120)


def write_model_dir(directory, vocab, family):
    """A random xlmr_debug model of `family` with every head type, saved as our model directory."""
    torch.manual_seed(0)
    cfg = argparse.Namespace(**FAMILIES[family])
    ARCH_CONFIG_REGISTRY["xlmr_debug"](cfg)
    dictionary = checkpoint.load_dictionary(str(vocab["dict"]))
    model = XlmrEncoderModel.build_model(cfg, SimpleNamespace(source_dictionary=dictionary))
    model.register_classification_head("xnli", num_classes=3)
    model.register_token_head("ner", 5)
    model.register_token_head("squad_qa", 2)
    with torch.no_grad():  # init_bert_params leaves LayerNorms at 1/0 and biases at 0: a swap would hide
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    directory.mkdir()
    model_cfg = {k: v for k, v in vars(cfg).items() if not k.startswith("_")}
    torch.save({"cfg": {"model": dict(model_cfg, _name="xlmr_encoder")}, "model": model.state_dict()},
               directory / "model.pt")
    for name in ("dict", "spm"):
        (directory / vocab[name].name).write_bytes(vocab[name].read_bytes())
    return directory


@pytest.fixture(scope="module", params=list(FAMILIES))
def exported(request, tmp_path_factory, vocab):
    root = tmp_path_factory.mktemp(request.param)
    ours = write_model_dir(root / "ours", vocab, request.param)
    assert cli.main(["export-hf", str(ours), str(root / "hf")]) == 0  # the real entry point
    assert cli.main(["import-hf", str(root / "hf"), str(root / "back")]) == 0
    return SimpleNamespace(family=request.param, ours=ours, hf=root / "hf", back=root / "back",
                           hub=hub.from_pretrained(str(ours)))


def batch(hub_interface, sentences):
    """Padded `(batch, seq_len)` ids of our hub encoding, and HF's attention mask."""
    ids = [hub_interface.encode(s) for s in sentences]
    tokens = torch.full((len(ids), max(map(len, ids))), hub_interface.dictionary.pad())
    for row, seq in zip(tokens, ids):
        row[:len(seq)] = seq
    return tokens, (tokens != hub_interface.dictionary.pad()).long()


def max_diff(a, b, mask):
    return (a - b).abs()[mask.bool()].max().item()


def test_every_hf_head_model_gives_our_logits_and_hidden_states(exported):
    model = exported.hub.model
    tokens, mask = batch(exported.hub, SAMPLE)
    with torch.no_grad():
        features, extra = model(tokens, features_only=True, return_all_hiddens=True)
        ours = {"": model(tokens)[0], "xnli": model(tokens, classification_head_name="xnli")[0],
                "ner": model(tokens, token_head_name="ner")[0], "squad_qa": model(tokens, token_head_name="squad_qa")[0]}
    worst = 0.0
    for subdir, suffix in HEADS.items():
        hf = getattr(transformers, hf_mapping.HF_PREFIX[exported.family] + suffix).from_pretrained(
            str(exported.hf / subdir)).eval()
        with torch.no_grad():
            out = hf(input_ids=tokens, attention_mask=mask, output_hidden_states=True)
        logits = torch.stack([out.start_logits, out.end_logits], -1) if subdir == "squad_qa" else out.logits
        diffs = [max_diff(logits, ours[subdir], mask if logits.dim() == 3 else torch.ones_like(logits))]
        # HF hidden_states = embedding output + each layer, as fairseq's inner_states, except that a
        # pre-LN model's last entry is after the final LayerNorm (fairseq's features), not before it.
        states = [s.transpose(0, 1) for s in extra["inner_states"]]
        if exported.family == hf_mapping.PRE_LN:
            states[-1] = features
        assert len(out.hidden_states) == len(states) == 3
        diffs += [max_diff(h, s, mask[..., None].expand_as(s)) for h, s in zip(out.hidden_states, states)]
        worst = max(worst, *diffs)
        assert max(diffs) <= 1e-4, (subdir, diffs)
    print(f"{exported.family}: max |HF - ours| over logits and hidden states = {worst:.2e}")


def test_export_then_import_gives_back_the_same_state_dict(exported):
    original = torch.load(exported.ours / "model.pt", weights_only=True)["model"]
    back = torch.load(exported.back / "model.pt", weights_only=True)["model"]
    assert sorted(back) == sorted(original)
    different = [k for k in original if not (original[k].dtype == back[k].dtype and torch.equal(original[k], back[k]))]
    assert not different
    spm = "sentencepiece.bpe.model"
    assert (exported.back / spm).read_bytes() == (exported.ours / spm).read_bytes()

    def pieces(directory):  # dict.txt counts are not kept: HF has none
        return [line.split()[0] for line in (directory / "dict.txt").read_text("utf-8").splitlines()]

    assert pieces(exported.back) == pieces(exported.ours)


def test_exported_config_has_xlm_r_values(exported):
    dictionary = exported.hub.dictionary
    for subdir, suffix in HEADS.items():
        config = json.loads((exported.hf / subdir / "config.json").read_text())
        assert config["architectures"] == [hf_mapping.HF_PREFIX[exported.family] + suffix]
        assert (config["vocab_size"], config["max_position_embeddings"], config["type_vocab_size"]) == (len(dictionary), 514, 1)
        assert (config["pad_token_id"], config["bos_token_id"], config["eos_token_id"]) == (1, 0, 2)
        assert config["layer_norm_eps"] == 1e-5 and config["hidden_act"] == "gelu"
        assert (exported.hf / subdir / "model.safetensors").is_file()
    assert json.loads((exported.hf / "xnli" / "config.json").read_text())["id2label"].keys() == {"0", "1", "2"}
    from safetensors.torch import load_file

    weights = load_file(str(exported.hf / "model.safetensors"))
    assert torch.equal(weights[hf_mapping.HF_TOKEN_TYPES], torch.zeros(1, 64))


@pytest.mark.parametrize("exported", [hf_mapping.POST_LN], indirect=True)  # the tokenizer is family-free
def test_hf_tokenizers_give_our_hub_ids(exported, tmp_path):
    ours = [exported.hub.encode(s).tolist() for s in SAMPLE]
    assert exported.hub.dictionary.unk() in ours[-1]  # the sample does reach <unk>
    fast = transformers.AutoTokenizer.from_pretrained(str(exported.hf))  # the exported tokenizer.json
    assert fast(SAMPLE)["input_ids"] == ours
    assert fast("A cat.", "Кот.")["input_ids"] == exported.hub.encode("A cat.", "Кот.").tolist()
    # transformers' own conversion of the bare SentencePiece model (what a sentencepiece.bpe.model-only
    # HF directory gives) agrees too.
    (tmp_path / "sentencepiece.bpe.model").write_bytes((exported.ours / "sentencepiece.bpe.model").read_bytes())
    assert transformers.XLMRobertaTokenizer.from_pretrained(str(tmp_path))(SAMPLE)["input_ids"] == ours


def test_stock_fairseq_loads_the_imported_checkpoint_as_roberta(exported):
    models, _, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(exported.back / "model.pt")], arg_overrides={"data": str(exported.back)}, strict=False)  # token heads
    stock = models[0].eval()
    assert type(stock).__name__ == "RobertaModel" and "xnli" in stock.classification_heads
    tokens, mask = batch(exported.hub, SAMPLE[:3])
    with torch.no_grad():  # at the real tokens: nobody reads padding positions (ours: zeros when packed)
        want = stock(tokens)[0]
        assert max_diff(want, exported.hub.model(tokens)[0], mask[..., None].expand_as(want)) <= 1e-5
        want = exported.hub.model(tokens, classification_head_name="xnli")[0]
        assert torch.allclose(stock(tokens, classification_head_name="xnli")[0], want, atol=1e-5)


@pytest.mark.parametrize("name, outputs, qa_heads, expected", [
    ("squad_qa", 2, None, True), ("QA", 2, None, True), ("ner", 2, None, False), ("qa", 5, None, False),
    ("spans", 2, ["spans"], True), ("squad_qa", 2, [], False),
])
def test_qa_rule(name, outputs, qa_heads, expected):
    assert hf_export.is_qa_head(name, outputs, qa_heads) is expected


@pytest.mark.parametrize("exported", [hf_mapping.POST_LN], indirect=True)
def test_bad_inputs_are_refused_before_anything_is_written(exported, tmp_path):
    with pytest.raises(ValueError, match="--qa-heads names 'nope'"):
        hf_export.export(exported.ours, tmp_path / "a", qa_heads=["nope"])
    with pytest.raises(ValueError, match="has 5"):
        hf_export.export(exported.ours, tmp_path / "a", qa_heads=["ner"])
    assert not (tmp_path / "a").exists()
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "model.pt").write_bytes((exported.ours / "model.pt").read_bytes())
    with pytest.raises(FileNotFoundError, match="dict.txt"):
        hf_export.export(incomplete, tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="config.json"):
        hf_import.import_hf(incomplete, tmp_path / "b")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    for command, source in (("export-hf", exported.ours), ("import-hf", exported.hf)):
        with pytest.raises(FileExistsError, match="--overwrite"):
            cli.run([command, str(source), str(busy)])
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("exported", [hf_mapping.POST_LN], indirect=True)
def test_a_mean_pooled_sentence_head_is_refused(exported, tmp_path):
    mean = tmp_path / "mean"
    mean.mkdir()
    for path in exported.ours.iterdir():
        (mean / path.name).write_bytes(path.read_bytes())
    state = torch.load(mean / "model.pt", weights_only=False)
    torch.save(dict(state, cfg=dict(state["cfg"], task={"pooling": "mean"})), mean / "model.pt")
    with pytest.raises(ValueError, match=r"task.pooling='mean'.*reads the <s> state"):
        hf_export.export(mean, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize("exported", [hf_mapping.POST_LN], indirect=True)
def test_a_failure_while_writing_leaves_the_old_output_in_place(exported, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    calls = []

    def fail_on_second_head(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    real = hf_mapping.to_hf
    monkeypatch.setattr(hf_mapping, "to_hf", fail_on_second_head)
    with pytest.raises(RuntimeError, match="disk full"):
        hf_export.export(exported.ours, out, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and [p.name for p in out.iterdir()] == ["keep.txt"]
    monkeypatch.setattr(hf_mapping, "to_hf", real)
    hf_export.export(exported.ours, out, overwrite=True)
    assert (out / "model.safetensors").is_file() and not (out / "keep.txt").exists()


def test_language_embeddings_and_other_layouts_have_no_hf_counterpart():
    with pytest.raises(ValueError, match="layernorm_embedding"):
        hf_mapping.family_of(argparse.Namespace(encoder_normalize_before=True, layernorm_embedding=True))
    state = {"encoder.sentence_encoder.embed_languages.weight": torch.zeros(2, 4),
             "encoder.sentence_encoder.version": torch.ones(1)}
    assert hf_mapping.unmapped_fairseq_keys(state, hf_mapping.POST_LN) == ["encoder.sentence_encoder.embed_languages.weight"]


def test_a_lone_hf_head_model_imports_with_its_head_and_a_fresh_lm_head(exported, tmp_path):
    assert hf_import.import_hf(exported.hf / "squad_qa", tmp_path / "qa") == ["qa"]  # named by --head-name default
    model = hub.from_pretrained(str(tmp_path / "qa")).model
    tokens, _ = batch(exported.hub, SAMPLE[:2])
    with torch.no_grad():
        want = exported.hub.model(tokens, token_head_name="squad_qa")[0]
        assert torch.equal(model(tokens, token_head_name="qa")[0], want)


@pytest.mark.parametrize("exported", [hf_mapping.PRE_LN], indirect=True)
def test_embedding_rows_beyond_the_tokenizer_are_dropped_on_import(exported, tmp_path):
    """XL/XXL releases pad the embedding table to 250,880 rows; no token id reaches the padding."""
    padded = transformers.XLMRobertaXLForMaskedLM.from_pretrained(str(exported.hf))
    padded.resize_token_embeddings(len(exported.hub.dictionary) + 7)
    padded.save_pretrained(str(tmp_path / "hf"))
    for name in ("tokenizer.json", "sentencepiece.bpe.model"):
        (tmp_path / "hf" / name).write_bytes((exported.hf / name).read_bytes())
    hf_import.import_hf(tmp_path / "hf", tmp_path / "back")
    back = torch.load(tmp_path / "back" / "model.pt", weights_only=True)["model"]
    original = torch.load(exported.ours / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(back[k], original[k]) for k in back)


def test_activations_hf_cannot_compute_are_refused():
    for field, value in (("activation_fn", "swish"), ("pooler_activation_fn", "relu")):
        cfg = argparse.Namespace(**dict({"activation_fn": "gelu", "pooler_activation_fn": "tanh"}, **{field: value}))
        with pytest.raises(ValueError, match=f"`model.{field}`={value!r}"):
            hf_mapping.hf_config(cfg, hf_mapping.POST_LN, dictionary=None, positions=514)
