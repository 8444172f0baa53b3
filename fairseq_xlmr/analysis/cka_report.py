"""`xlmr analyze cka`: CKA (Kornblith et al., 2019) between the layers of two models, or of two languages in one
model, on parallel sentences (Conneau, Wu et al., 2020, §5); writes cka.json, cka.md and a layer x layer heatmap.
"""

from pathlib import Path
from typing import Dict

import torch

from fairseq_xlmr.analysis import cka, features
from fairseq_xlmr.files import write_atomic, write_json
from fairseq_xlmr.tables import markdown_table

RBF_MAX_SENTENCES = 5_000  # float64 n x n Gram, distance and centred matrices: about 1 GB at this size


def run_cka(args) -> str:
    if args.max_lines < 0 or args.sigma_fraction <= 0:
        raise ValueError(f"--max-lines must be >= 0 (got {args.max_lines}) and --sigma-fraction > 0 "
                         f"(got {args.sigma_fraction}); Kornblith et al. use 0.5 of the median distance.")
    if args.model_b is None and args.lang_a == args.lang_b:
        raise ValueError(f"--lang-a and --lang-b are both {args.lang_a!r} with one model: CKA would be 1 everywhere. "
                         "Give two languages, or a second model with --model-b.")
    xs, ys = features.read_parallel(args.data_dir, args.lang_a, args.lang_b, args.max_lines)
    if args.kernel == "rbf" and len(xs) > RBF_MAX_SENTENCES:
        raise ValueError(f"--kernel rbf builds {len(xs)} x {len(xs)} Gram matrices; keep --max-lines <= "
                         f"{RBF_MAX_SENTENCES} (got {len(xs)} pairs) or use --kernel linear, which has no such limit.")
    hub_a, hub_b = features.load_hubs(args.model_a, args.model_b, args.cpu)
    states_a = features.sentence_states(hub_a, xs, args.batch_size)
    states_b = features.sentence_states(hub_b, ys, args.batch_size)
    matrix = cka.cka_matrix(states_a, states_b, args.kernel, args.sigma_fraction)
    diagonal = [matrix[i][i] for i in range(min(len(matrix), len(matrix[0])))]
    # Chance level: the same layers with B's sentences in a fixed random order (pairs no longer parallel).
    shuffle = torch.randperm(len(ys), generator=torch.Generator().manual_seed(0))
    shuffled = [cka.cka(states_a[layer], states_b[layer][shuffle], args.kernel, args.sigma_fraction)
                for layer in sorted(states_a)[:len(diagonal)]]
    result = {"kernel": args.kernel, "model_a": str(args.model_a), "model_b": str(args.model_b or args.model_a),
              "lang_a": args.lang_a, "lang_b": args.lang_b, "sentences": len(xs),
              "sigma_fraction": args.sigma_fraction if args.kernel == "rbf" else None,
              "layers_a": sorted(states_a), "layers_b": sorted(states_b), "matrix": matrix, "diagonal": diagonal,
              "diagonal_shuffled": shuffled}
    out = Path(args.out_dir)
    write_json(out / "cka.json", result)
    write_atomic(out / "cka.md", cka_markdown(result))
    plot_heatmap(result, out / "cka.png")
    return (f"{args.kernel} CKA, same layer, {args.lang_a} vs {args.lang_b}: " + " ".join(f"{v:.3f}" for v in diagonal)
            + "  (unpaired: " + " ".join(f"{v:.3f}" for v in shuffled) + ")")


def cka_markdown(result: Dict) -> str:
    a = f"A: {Path(result['model_a']).name} ({result['lang_a']})"
    b = f"B: {Path(result['model_b']).name} ({result['lang_b']})"
    lines = [f"{result['kernel'].capitalize()} CKA on {result['sentences']} parallel sentences, rows {a}, "
             f"columns {b} (layer 0 = embeddings).", ""]
    rows = [[f"A{i}"] + [f"{v:.3f}" for v in row] for i, row in zip(result["layers_a"], result["matrix"])]
    lines += markdown_table(["layer"] + [f"B{j}" for j in result["layers_b"]], rows)
    lines += ["", "Same layer, parallel pairs vs the same sentences unpaired (B shuffled: chance level).", ""]
    lines += markdown_table(["layer", "parallel", "shuffled"],
                            [[str(layer), f"{p:.3f}", f"{q:.3f}"] for layer, p, q in
                             zip(result["layers_a"], result["diagonal"], result["diagonal_shuffled"])])
    return "\n".join(lines) + "\n"


def plot_heatmap(result: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = result["matrix"]
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * len(matrix[0]), 1.0 + 0.6 * len(matrix)))
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis", origin="lower")
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if value > 0.6 else "white")
    ax.set_xticks(range(len(result["layers_b"])), result["layers_b"])
    ax.set_yticks(range(len(result["layers_a"])), result["layers_a"])
    ax.set_xlabel(f"layer of {Path(result['model_b']).name} on {result['lang_b']}")
    ax.set_ylabel(f"layer of {Path(result['model_a']).name} on {result['lang_a']}")
    ax.set_title(f"{result['kernel']} CKA, {result['sentences']} sentences", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
