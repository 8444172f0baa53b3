"""The real `xlmr fetch-pretrained multilingual-e5-small` (downloads ~91 MB once): XLM-R's ids, retrieval of
translations far above its random-init twin, and an HF export with the same hidden states."""

import pytest
import torch

from fairseq_xlmr import cli, hub
from fairseq_xlmr.evaluation.retrieval import embed_sentences
from fairseq_xlmr.experiments.random_init import write_random_init

pytestmark = pytest.mark.slow

# Twelve sentences and their translations, written for this test.
EN = ["The cat sleeps on the sofa.", "I would like a cup of coffee, please.", "The train leaves at eight o'clock.",
      "My sister works in a hospital.", "It is raining again today.", "Where is the nearest pharmacy?",
      "We bought fresh bread at the market.", "The children are playing in the garden.",
      "This book is very interesting.", "Please close the window, it is cold.", "He forgot his keys at home.",
      "The museum is closed on Mondays."]
TRANSLATIONS = {
    "de": ["Die Katze schläft auf dem Sofa.", "Ich hätte gern eine Tasse Kaffee, bitte.", "Der Zug fährt um acht Uhr ab.",
           "Meine Schwester arbeitet in einem Krankenhaus.", "Heute regnet es schon wieder.",
           "Wo ist die nächste Apotheke?", "Wir haben auf dem Markt frisches Brot gekauft.",
           "Die Kinder spielen im Garten.", "Dieses Buch ist sehr interessant.",
           "Bitte schließ das Fenster, es ist kalt.", "Er hat seine Schlüssel zu Hause vergessen.",
           "Das Museum ist montags geschlossen."],
    "ru": ["Кошка спит на диване.", "Я бы хотел чашку кофе, пожалуйста.", "Поезд отправляется в восемь часов.",
           "Моя сестра работает в больнице.", "Сегодня опять идёт дождь.", "Где ближайшая аптека?",
           "Мы купили свежий хлеб на рынке.", "Дети играют в саду.", "Эта книга очень интересная.",
           "Пожалуйста, закрой окно, холодно.", "Он забыл ключи дома.", "Музей закрыт по понедельникам."],
    "zh": ["猫在沙发上睡觉。", "请给我一杯咖啡。", "火车八点出发。", "我姐姐在医院工作。", "今天又下雨了。", "最近的药店在哪里？",
           "我们在市场上买了新鲜的面包。", "孩子们在花园里玩。", "这本书很有意思。", "请关上窗户，天很冷。", "他把钥匙忘在家里了。",
           "博物馆星期一闭馆。"],
}


def top1(model, layer):
    """Mean xx->en top-1 accuracy (cosine of mean-pooled states at `layer`) over TRANSLATIONS."""
    english = torch.nn.functional.normalize(embed_sentences(model, EN, [layer])[layer], dim=-1)
    scores = []
    for sentences in TRANSLATIONS.values():
        other = torch.nn.functional.normalize(embed_sentences(model, sentences, [layer])[layer], dim=-1)
        scores.append((other @ english.T).argmax(-1).eq(torch.arange(len(EN))).float().mean().item())
    return sum(scores) / len(scores)


def test_fetch_pretrained_gives_a_real_multilingual_encoder(tmp_path):
    out = tmp_path / "e5"
    assert cli.main(["fetch-pretrained", "multilingual-e5-small", "--out-dir", str(out)]) == 0
    e5 = hub.from_pretrained(str(out))
    assert e5.encode("Hello world!").tolist() == [0, 35378, 8999, 38, 2]  # XLM-R's ids
    assert (e5.model.args.sentence_pooling, e5.model.args.layer_norm_eps) == ("mean", 1e-12)
    write_random_init(out, tmp_path / "random", seed=1)
    random = hub.from_pretrained(str(tmp_path / "random"))
    pretrained, baseline = top1(e5, 12), top1(random, 12)
    print(f"xx->en top-1 on {len(EN)} sentences, last layer: e5 {pretrained:.2f}, random init {baseline:.2f}")
    assert pretrained >= 0.9 and baseline <= 0.5

    transformers = pytest.importorskip("transformers")
    assert cli.main(["export-hf", str(out), str(tmp_path / "hf")]) == 0
    exported = transformers.XLMRobertaModel.from_pretrained(str(tmp_path / "hf")).eval()
    tokens = e5.encode(TRANSLATIONS["zh"][0]).unsqueeze(0)
    with torch.no_grad():
        got = exported(input_ids=tokens).last_hidden_state
    assert (got - e5.extract_features(tokens)).abs().max().item() <= 1e-4
