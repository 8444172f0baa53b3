"""`make bench`: every benchmark in one run, written to bench/out/{results.json,results.md,*.png}.

Sections: binarisation (`xlmr binarize` vs `spm_encode | fairseq-preprocess`, same corpus, model and
workers), task start-up time/peak memory vs number of languages (`xlmr_mlm` vs stock
`multilingual_masked_lm`), and pretraining throughput (ours vs stock fairseq vs HF transformers; CUDA
when present, else CPU; see bench/throughput.py), all on the real corpus of `xlmr fetch-corpora`; and
fine-tuning speed per protocol (ours vs HF transformers + torch AdamW on multilingual-e5-small, `xlmr
fetch-pretrained`, and the English sentiment set of `xlmr fetch-eval-data`; see bench/finetune.py).
"""

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

import torch

from bench import binarize as binarize_bench
from bench import finetune as finetune_bench
from bench import startup as startup_bench
from bench import throughput as throughput_bench

OUT = Path("bench/out")


def fetch_corpus(out: Path) -> Path:
    if not (out / "corpus" / "mono").is_dir():
        subprocess.run([sys.executable, "-m", "fairseq_xlmr.cli", "fetch-corpora", "--out-dir", str(out / "corpus")],
                       check=True)
    return out / "corpus" / "mono"


def binarize_all(corpus: Path, spm_dir: Path, out: Path) -> Path:
    """Every language of the corpus binarised once, for the start-up scaling curve."""
    from fairseq_xlmr.preprocess.binarize import binarize

    dest = out / "data-bin-all"
    if not dest.is_dir():
        binarize(corpus, spm_dir / "sentencepiece.bpe.model", dest, workers=2, quiet=True)
    return dest


def cli_startup(runs: int = 5):
    """Seconds (best of `runs` fresh processes) of `xlmr --help` and of a command's `--help`."""
    import time

    xlmr = str(Path(sys.executable).with_name("xlmr"))
    timings = {}
    for argv in (["--help"], ["binarize", "--help"], ["fetch-pretrained", "--help"]):
        best = float("inf")
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run([xlmr, *argv], check=True, capture_output=True)
            best = min(best, time.perf_counter() - start)
        timings["xlmr " + " ".join(argv)] = best
    return timings


def fetch_finetune_inputs(out: Path):
    """(multilingual-e5-small model dir, sentiment data dir), fetched once into `out`."""
    model, data = out / "models" / "multilingual-e5-small", out / "eval_data"
    xlmr = [sys.executable, "-m", "fairseq_xlmr.cli"]
    if not (model / "model.pt").is_file():
        subprocess.run(xlmr + ["fetch-pretrained", "multilingual-e5-small", "--out-dir", str(model)], check=True)
    if not (data / "summary.json").is_file():
        subprocess.run(xlmr + ["fetch-eval-data", "--out-dir", str(data)], check=True)
    return model, data / "sentiment"


def write_markdown(results, path: Path):
    """results.md: a table per section that results.json holds."""
    lines = [f"Machine: {results['machine']}. Command: `make bench`.", ""]
    b = results.get("binarize")
    if b:
        lines += ["| binarisation | corpus | languages | workers | baseline s | ours s | speed-up |",
                  "|---|---|---|---|---|---|---|",
                  f"| `xlmr binarize` vs `spm_encode \\| fairseq-preprocess` | {b['corpus_mb']:.0f} MB | "
                  f"{b['languages']} | {b['workers']} | {b['baseline_s']:.1f} | {b['ours_s']:.1f} | "
                  f"**{b['speedup']:.1f}×** |", ""]
    if results.get("startup"):
        lines += ["| languages | start-up s (ours) | start-up s (stock) | peak RSS MB (ours) | peak RSS MB (stock) |",
                  "|---|---|---|---|---|"]
        by_n = {}
        for row in results["startup"]:
            by_n.setdefault(row["languages"], {})[row["task"]] = row
        for n, r in sorted(by_n.items()):
            lines.append(f"| {n} | {r['ours']['setup_s']:.2f} | {r['stock']['setup_s']:.2f} | "
                         f"{r['ours']['peak_rss_mb']:.0f} | {r['stock']['peak_rss_mb']:.0f} |")
    t = results.get("throughput")
    if t:
        shape = t["shape"]
        lines += ["", f"Pretraining throughput on {t['device']} ({shape['layers']} layers, dim {shape['dim']}, "
                  f"{shape['batch']}×{shape['tokens']} tokens, vocab {t['vocab']:,}, {t['precision']}; MFU against a "
                  f"measured {t['peak_flops'] / 1e12:.1f} TFLOP/s matmul peak, {t['flops_per_token'] / 1e6:.0f} "
                  "MFLOP/token):", "",
                  "| stack | tokens/s | peak memory MB | MFU | ours / this |", "|---|---|---|---|---|"]
        for kind, run in t["runs"].items():
            ratio = t["runs"]["ours"]["tokens_per_s"] / run["tokens_per_s"]
            lines.append(f"| {kind} | {run['tokens_per_s']:,.0f} | {run['peak_mem_mb']:,.0f} | "
                         f"{100 * run['mfu']:.1f}% | {ratio:.2f}× |")
    if results.get("finetune"):
        lines += ["", finetune_bench.markdown(results["finetune"])]
    if results.get("cli"):
        lines += ["", "| command line (best of 5 fresh processes) | seconds |", "|---|---|"]
        lines += [f"| `{command}` | {seconds:.2f} |" for command, seconds in results["cli"].items()]
    path.write_text("\n".join(lines) + "\n")


def plot_startup(rows, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for task, style in (("ours", "o-"), ("stock", "s--")):
        pts = sorted((r["languages"], r["setup_s"], r["peak_rss_mb"]) for r in rows if r["task"] == task)
        xs = [p[0] for p in pts]
        axes[0].plot(xs, [p[1] for p in pts], style, label=task)
        axes[1].plot(xs, [p[2] for p in pts], style, label=task)
    axes[0].set(title="task start-up (set-up + first epoch's batches)", xlabel="languages", ylabel="seconds")
    axes[1].set(title="peak resident memory", xlabel="languages", ylabel="MB")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--counts", default="5,10,20,40,80,120", help="language counts for the start-up curve")
    parser.add_argument("--only", default="cli,binarize,startup,throughput,finetune",
                        help="sections to (re-)run; the others are kept from an earlier results.json")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sections = args.only.split(",")
    earlier = out / "results.json"
    results = json.loads(earlier.read_text()) if earlier.exists() and len(sections) < 5 else {}
    results["machine"] = (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                          f"torch {torch.__version__}")

    if "cli" in sections:
        results["cli"] = cli_startup()
        print(f"[bench] xlmr --help {results['cli']['xlmr --help']:.2f} s", flush=True)
    corpus = fetch_corpus(out)
    if "binarize" in sections:
        print("[bench] binarisation ...", flush=True)
        results["binarize"] = binarize_bench.run(corpus, out / "binarize", args.workers)
        print(f"[bench] binarize speed-up {results['binarize']['speedup']:.1f}x", flush=True)
    data_bin = binarize_all(corpus, out / "binarize" / "spm", out)
    if "startup" in sections:
        print("[bench] task start-up vs languages ...", flush=True)
        counts = [int(c) for c in args.counts.split(",")]
        results["startup"] = startup_bench.run(data_bin, out / "startup", counts)
        plot_startup(results["startup"], out / "startup.png")
    if "throughput" in sections:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        print(f"[bench] pretraining throughput on {device} ...", flush=True)
        results["throughput"] = throughput_bench.run(data_bin, out / "throughput", device)
    if "finetune" in sections:
        print("[bench] fine-tuning speed per protocol, ours vs HF ...", flush=True)
        model, sentiment = fetch_finetune_inputs(out)
        results["finetune"] = finetune_bench.run(model, sentiment, out / "finetune")

    (out / "results.json").write_text(json.dumps(results, indent=1))
    write_markdown(results, out / "results.md")
    print((out / "results.md").read_text())
    print(f"[bench] wrote {out}/results.json, results.md, startup.png")


if __name__ == "__main__":
    main()
