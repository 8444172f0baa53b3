"""`xlmr plot-log`: per-language loss curves (PNG) from a fairseq-train `--log-file` in JSON format."""

import json


def parse_stats(line):
    """The JSON stats of one log line (bare, as under hydra, or after fairseq's `... | logger | `)."""
    start = line.find('{"')
    if start < 0:
        return None
    try:
        return json.loads(line[start:])
    except json.JSONDecodeError:
        return None


def read_log(path):
    """{(kind, lang): [(update, loss)]} with kind "train" (train_inner lines) or "valid"."""
    curves = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            stats = parse_stats(line)
            if stats is None or "train_loss" in stats:  # end-of-epoch averages repeat train_inner
                continue
            kind, prefix, update_key = (("valid", "valid_loss_", "valid_num_updates") if "valid_loss" in stats
                                        else ("train", "loss_", "num_updates"))
            for key, value in stats.items():
                if key.startswith(prefix):
                    curves.setdefault((kind, key[len(prefix):]), []).append((int(stats[update_key]), float(value)))
    return curves


def plot_curves(curves, out_png, title="per-language MLM loss"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not curves:
        raise ValueError("no per-language losses in the log: was it written by task xlmr_mlm with "
                         "--log-format json --log-file?")
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    languages = sorted({lang for _, lang in curves})
    colors = plt.get_cmap("tab20")  # 20 distinct colours: one per language up to 20
    for ax, kind in zip(axes, ("train", "valid")):
        for (k, lang), points in sorted(curves.items()):
            if k == kind:
                xs, ys = zip(*points)
                i = languages.index(lang)
                ax.plot(xs, ys, label=lang, color=colors(i % 20), linestyle="-" if i < 20 else "--",
                        marker="o" if kind == "valid" else None, markersize=3)
        ax.set_title(f"{kind} loss (bits per masked token)")
        ax.set_xlabel("update")
        ax.grid(alpha=0.3)
    axes[1].legend(ncol=2, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def run(args):
    curves = read_log(args.log_file)
    plot_curves(curves, args.out)
    languages = sorted({lang for _, lang in curves})
    print(f"wrote {args.out}: {len(languages)} languages ({', '.join(languages)})")
    return 0
