"""`xlmr plot-log`: per-language loss curves (PNG) from a fairseq-train `--log-file` in JSON format."""

import json

FIELDS = {"train_inner": ("loss_", "train"), "valid": ("valid_loss_", "valid")}


def add_arguments(parser):
    parser.add_argument("log_file", help="fairseq-train --log-file written with --log-format json")
    parser.add_argument("--out", required=True, help="PNG to write")


def read_log(path):
    """{(kind, lang): [(update, loss)]} from the JSON stat lines of a fairseq log file."""
    curves = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split(" | ", 3)  # time | level | logger | message
            if len(parts) < 4 or parts[2] not in FIELDS or not parts[3].startswith("{"):
                continue
            stats = json.loads(parts[3])
            prefix, kind = FIELDS[parts[2]]
            update = int(stats.get("num_updates", stats.get("valid_num_updates", 0)))
            for key, value in stats.items():
                if key.startswith(prefix):
                    curves.setdefault((kind, key[len(prefix):]), []).append((update, float(value)))
    return curves


def plot_curves(curves, out_png, title="per-language MLM loss"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not curves:
        raise ValueError("no per-language losses in the log: was it written by task xlmr_mlm with "
                         "--log-format json --log-file?")
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    for ax, kind in zip(axes, ("train", "valid")):
        for (k, lang), points in sorted(curves.items()):
            if k == kind:
                xs, ys = zip(*points)
                ax.plot(xs, ys, label=lang, marker="o" if kind == "valid" else None, markersize=3)
        ax.set_title(f"{kind} loss (bits per masked token)")
        ax.set_xlabel("update")
        ax.grid(alpha=0.3)
    axes[1].legend(ncol=2, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def main(args):
    curves = read_log(args.log_file)
    plot_curves(curves, args.out)
    languages = sorted({lang for _, lang in curves})
    print(f"wrote {args.out}: {len(languages)} languages ({', '.join(languages)})")
    return 0
