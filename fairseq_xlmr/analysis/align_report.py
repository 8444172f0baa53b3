"""`xlmr analyze align`: sentence retrieval per layer between two models' spaces, before and after a linear map fitted
on parallel sentences (Conneau, Wu et al., 2020, §6: monolingual models align); writes align.json, align.md and a plot.
"""

from pathlib import Path
from typing import Dict, Optional

from fairseq_xlmr.analysis import align, features
from fairseq_xlmr.files import write_atomic, write_json
from fairseq_xlmr.tables import markdown_table


def run_align(args) -> str:
    if args.max_lines < 0 or args.train_lines < 0:
        raise ValueError(f"--max-lines ({args.max_lines}) and --train-lines ({args.train_lines}) must be >= 0.")
    xs, ys = features.read_parallel(args.data_dir, args.src, args.tgt, args.max_lines)
    train = args.train_lines or len(xs) // 2
    if not 2 <= train <= len(xs) - 2:
        raise ValueError(f"--train-lines {train} of {len(xs)} pairs: need >= 2 to fit the map and >= 2 held apart "
                         "to test it; lower --train-lines or give more parallel text.")
    hub_a, hub_b = features.load_hubs(args.model_a, args.model_b, args.cpu)
    states_a = features.sentence_states(hub_a, xs, args.batch_size)
    states_b = features.sentence_states(hub_b, ys, args.batch_size)
    curves = align.per_layer(states_a, states_b, train, args.map)
    result = {"src": args.src, "tgt": args.tgt, "model_a": str(args.model_a), "model_b": str(args.model_b),
              "map": args.map, "train_pairs": train, "test_pairs": len(xs) - train, **curves}
    out = Path(args.out_dir)
    write_json(out / "align.json", result)
    write_atomic(out / "align.md", align_markdown(result))
    plot_align(result, out / "align.png")
    best = max(range(len(curves["layers"])), key=lambda n: curves["after"][n])
    return (f"{args.map} map {args.src}->{args.tgt}: best layer {curves['layers'][best]} retrieval "
            f"{curves['after'][best]:.1f}% after the map ({_fmt(curves['before'][best])}% before), "
            f"{len(xs) - train} held-apart pairs")


def _fmt(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def align_markdown(result: Dict) -> str:
    lines = [f"Sentence retrieval {result['src']}→{result['tgt']} (accuracy %, cosine, mean-pooled layer states) "
             f"of {Path(result['model_a']).name} against {Path(result['model_b']).name}, before and after a "
             f"{result['map']} map fitted on {result['train_pairs']} pairs; {result['test_pairs']} held-apart pairs.",
             ""]
    rows = [[str(layer)] + [_fmt(result[key][n]) for key in ("before", "after", "before_reverse", "after_reverse")]
            for n, layer in enumerate(result["layers"])]
    lines += markdown_table(["layer", "before", "after", "before (reverse)", "after (reverse)"], rows)
    return "\n".join(lines) + "\n"


def plot_align(result: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    layers = result["layers"]
    ax.plot(layers, result["after"], marker="o", label=f"after {result['map']} map")
    if result["before"][0] is not None:
        ax.plot(layers, result["before"], marker="o", ls="--", label="before (identity)")
    ax.set_xticks(layers)
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel(f"retrieval accuracy {result['src']}→{result['tgt']} (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{Path(result['model_a']).name} vs {Path(result['model_b']).name}, "
                 f"{result['test_pairs']} test pairs", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
