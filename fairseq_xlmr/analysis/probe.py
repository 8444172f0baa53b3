"""Linear probes on frozen sentence vectors: does a classifier fitted on one language's mean-pooled layer
states read another language's? Cross-lingual transfer with no fine-tuning at all (the probing view of
Conneau, Wu et al., 2020, applied to sentence classification).

A logistic regression (scikit-learn, L2, `C`) is fitted per layer on the training language's vectors and
scored on every test language, raw and centred. Centred moves each test language's mean vector onto the
training mean before the classifier (as `xlmr finetune-eval --center`); it is transductive: it reads the
unlabelled test vectors of that language.
"""

from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from fairseq_xlmr.experiments.spread import spread as cell_spread

FEATURES = ("raw", "centred")


def fit(vectors: torch.Tensor, labels: Sequence[str], c: float = 1.0, seed: int = 0):
    """A logistic regression on `(n, dim)` vectors; labels are strings."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=5000, random_state=seed).fit(vectors.double().numpy(), list(labels))


def score(classifier, vectors: torch.Tensor, labels: Sequence[str], shift: torch.Tensor = None) -> Dict:
    """{"accuracy": %, "predicted": {label: % of rows given it}} of `classifier` on `vectors + shift`."""
    x = vectors.double() if shift is None else vectors.double() + shift.double()
    predicted = classifier.predict(x.numpy())
    gold = np.asarray(list(labels))
    return {"accuracy": 100.0 * float((predicted == gold).mean()),
            "predicted": {str(label): 100.0 * float((predicted == label).mean()) for label in classifier.classes_}}


def probe_layers(train: Dict[int, torch.Tensor], train_labels: Sequence[str],
                 tests: Dict[str, Tuple[Dict[int, torch.Tensor], Sequence[str]]],
                 c: float = 1.0) -> Dict[str, Dict[int, Dict[str, Dict]]]:
    """{"raw"|"centred": {layer: {test language: score()}}}: one classifier per layer, fitted on `train`
    ({layer: vectors}) and scored on every test language's vectors of that layer."""
    out = {name: {} for name in FEATURES}
    for layer in sorted(train):
        classifier = fit(train[layer], train_labels, c)
        train_mean = train[layer].double().mean(0)
        for name in FEATURES:
            out[name][layer] = {}
        for lang, (vectors, labels) in tests.items():
            out["raw"][layer][lang] = score(classifier, vectors[layer], labels)
            shift = train_mean - vectors[layer].double().mean(0)
            out["centred"][layer][lang] = score(classifier, vectors[layer], labels, shift)
    return out


def spread(model: Dict[str, Dict], baselines: List[Dict[str, Dict]]) -> Dict[str, Dict[int, Dict[str, Dict]]]:
    """Where `model`'s accuracies (a probe_layers() result) stand among several baselines' (random inits):
    {features: {layer: {language: evaluation.spread.spread()'s "mean", "std", "min", "max", "below"...}}}."""
    def accuracies(result, name, layer):
        return {lang: score["accuracy"] for lang, score in result[name][layer].items()}

    return {name: {layer: cell_spread(accuracies(model, name, layer), [accuracies(b, name, layer) for b in baselines])
                   for layer in model[name]} for name in FEATURES}
