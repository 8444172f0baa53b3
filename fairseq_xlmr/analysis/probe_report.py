"""`xlmr analyze probe`: linear probes per layer on frozen mean-pooled states, fitted on one language and scored on
the others, raw and centred (analysis/probe.py), optionally among K random-init twins; writes probe.json, probe.md and
a plot.
"""

import tempfile
from pathlib import Path
from typing import Dict

from tqdm import tqdm

from fairseq_xlmr.analysis import features, probe
from fairseq_xlmr.data.readers import read_labelled_tsv
from fairseq_xlmr.experiments.random_init import write_random_init
from fairseq_xlmr.files import parse_list, write_atomic, write_json
from fairseq_xlmr.tables import markdown_table


def read_probe_data(args):
    """(train examples, {test language: examples}) from --data-dir; every problem is reported before any
    model is loaded: missing files, fewer than two training labels, test labels the training split lacks."""
    if args.c <= 0:
        raise ValueError(f"--C must be > 0, got {args.c}; 1.0 is scikit-learn's default.")
    root = Path(args.data_dir)
    train_file = root / args.train_lang / f"{args.train_split}.tsv"
    if not train_file.is_file():
        raise ValueError(f"no training file {train_file}: --data-dir needs <train-lang>/<train-split>.tsv "
                         f"(e.g. `xlmr fetch-eval-data`'s sentiment/en/train.tsv); fix --data-dir or --train-lang.")
    if args.test_langs:
        langs = parse_list(args.test_langs, "--test-langs")
    else:
        langs = sorted(d.name for d in root.iterdir() if (d / f"{args.test_split}.tsv").is_file())
    if not langs:
        raise ValueError(f"no <lang>/{args.test_split}.tsv under {root}; fix --data-dir, --test-langs or --test-split.")
    missing = [str(root / lang / f"{args.test_split}.tsv") for lang in langs
               if not (root / lang / f"{args.test_split}.tsv").is_file()]
    if missing:
        raise ValueError(f"--test-langs {','.join(langs)}: no test file {', '.join(missing)}; each language needs "
                         f"<lang>/{args.test_split}.tsv under --data-dir.")

    def read(path, lang):
        return read_labelled_tsv(path, args.text_column, args.label_column, language=lang)

    train = read(train_file, args.train_lang)
    labels = sorted({e.label for e in train})
    if len(labels) < 2:
        raise ValueError(f"{train_file}: {len(train)} rows with labels {labels}; a probe needs at least two labels.")
    tests = {}
    for lang in langs:
        tests[lang] = read(root / lang / f"{args.test_split}.tsv", lang)
        unseen = sorted({e.label for e in tests[lang]} - set(labels))
        if unseen:
            raise ValueError(f"{root / lang / (args.test_split + '.tsv')}: labels {unseen} are not in the training "
                             f"split ({labels}); the probe could never predict them. Fix the file or --label-column.")
    return train, tests


def probe_model(args, model_dir, train, tests, desc: str) -> Dict:
    """probe_layers() of one model dir on the examples read by read_probe_data()."""
    hub = features.load_hub(model_dir, args.cpu).eval()
    splits = tqdm([(args.train_lang, train), *tests.items()], desc=desc, unit="file", leave=False)
    states = [(lang, features.sentence_states(hub, [e.text_a for e in rows], args.batch_size), rows)
              for lang, rows in splits]
    test_states = {lang: (vectors, [e.label for e in rows]) for lang, vectors, rows in states[1:]}
    return probe.probe_layers(states[0][1], [e.label for e in train], test_states, args.c)


def run_probe(args) -> str:
    if args.random_inits < 0 or args.random_inits == 1:
        raise ValueError(f"--random-inits must be 0 or >= 2 (a spread needs two), got {args.random_inits}.")
    train, tests = read_probe_data(args)
    models = {"a": args.model_a}
    if args.model_b is not None:
        models["b"] = args.model_b
    result = {"data_dir": str(args.data_dir), "train_lang": args.train_lang, "train_split": args.train_split,
              "test_split": args.test_split, "C": args.c, "pooling": "mean",
              "sentences": {"train": len(train), **{lang: len(rows) for lang, rows in tests.items()}},
              "labels": sorted({e.label for e in train}), "models": {}}
    for key, model_dir in models.items():
        result["models"][key] = {"dir": str(model_dir),
                                 **probe_model(args, model_dir, train, tests, f"probe {Path(model_dir).name}")}
    if args.random_inits:
        baselines = []
        with tempfile.TemporaryDirectory() as tmp:
            for seed in tqdm(range(1, args.random_inits + 1), desc="random inits", unit="model"):
                twin = write_random_init(args.model_a, Path(tmp) / f"seed{seed}", seed=seed).parent
                baselines.append(probe_model(args, twin, train, tests, f"random init {seed}"))
        result["random_inits"] = {"seeds": list(range(1, args.random_inits + 1)),
                                  **probe.spread(result["models"]["a"], baselines)}
    out = Path(args.out_dir)
    write_json(out / "probe.json", result)
    write_atomic(out / "probe.md", probe_markdown(result))
    plot_probe(result, out / "probe.png")
    others = [lang for lang in tests if lang != args.train_lang] or list(tests)
    parts = []
    for key, model in result["models"].items():
        for name in probe.FEATURES:
            by_layer = {layer: sum(model[name][layer][l]["accuracy"] for l in others) / len(others)
                        for layer in model[name]}
            best = max(by_layer, key=by_layer.get)
            parts.append(f"{key}={Path(model['dir']).name} {name}: best layer {best}, {by_layer[best]:.1f}")
    summary = f"probe {args.train_lang} -> {','.join(others)} (mean accuracy %): " + "; ".join(parts)
    if args.random_inits:
        for lang in others:
            cells = [c for name in probe.FEATURES for c in (v[lang] for v in result["random_inits"][name].values())]
            beaten = sum(c["below"] == args.random_inits for c in cells)
            summary += (f"\n{lang}: model a above all {args.random_inits} random inits in {beaten} of {len(cells)} "
                        f"(features, layer) cells")
    return summary


def probe_markdown(result: Dict) -> str:
    langs = list(next(iter(result["models"]["a"]["raw"].values())))
    first = result["labels"][0]
    lines = [f"Linear probe (logistic regression, C={result['C']}) on frozen mean-pooled layer states, fitted on "
             f"{result['sentences']['train']} {result['train_lang']} sentences ({result['train_split']}), scored on "
             f"each language's {result['test_split']} split: accuracy % (in brackets: % predicted {first!r}). "
             "Centred: each language's mean vector moved onto the training mean first. Layer 0 = embeddings.", ""]
    rows = []
    for key, model in result["models"].items():
        for name in probe.FEATURES:
            for layer, by_lang in model[name].items():
                rows.append([f"{key}: {Path(model['dir']).name}", name, str(layer)]
                            + [f"{by_lang[l]['accuracy']:.1f} ({by_lang[l]['predicted'][first]:.0f})" for l in langs])
    lines += markdown_table(["model", "features", "layer"] + langs, rows)
    spread = result.get("random_inits")
    if spread:
        k = len(spread["seeds"])
        lines += ["", f"Model a among {k} random inits of itself (`xlmr random-init` seeds 1..{k}): their accuracy "
                  f"mean ± std [min, max], then how many of the {k} model a beats.", ""]
        rows = [[name, str(layer)] + [f"{c[l]['mean']:.1f} ± {c[l]['std']:.1f} [{c[l]['min']:.1f}, {c[l]['max']:.1f}]"
                                      f" {c[l]['below']}/{k}" for l in langs]
                for name in probe.FEATURES for layer, c in spread[name].items()]
        lines += markdown_table(["features", "layer"] + langs, rows)
    return "\n".join(lines) + "\n"


def plot_probe(result: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, name in zip(axes, probe.FEATURES):
        layers = sorted(result["models"]["a"][name])  # every model and the random inits: the same layers
        for (key, model), style in zip(result["models"].items(), ("-", "--")):
            for n, lang in enumerate(model[name][layers[0]]):
                ax.plot(layers, [model[name][layer][lang]["accuracy"] for layer in layers], style, marker="o",
                        color=colours[n % len(colours)], label=f"{lang} ({key}: {Path(model['dir']).name})")
        spread = result.get("random_inits")
        if spread:  # the random inits' mean ± std, as a band in each language's colour
            for n, lang in enumerate(spread[name][layers[0]]):
                cells = [spread[name][layer][lang] for layer in layers]
                ax.fill_between(layers, [c["mean"] - c["std"] for c in cells], [c["mean"] + c["std"] for c in cells],
                                color=colours[n % len(colours)], alpha=0.12, lw=0)
        ax.axhline(100.0 / len(result["labels"]), color="grey", lw=0.8, ls=":")
        ax.set_xticks(layers)
        ax.set_xlabel("layer (0 = embeddings)")
        band = f"; bands: {len(spread['seeds'])} random inits, mean ± std" if spread else ""
        ax.set_title(f"{name} states, probe fitted on {result['train_lang']}{band}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    axes[1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
