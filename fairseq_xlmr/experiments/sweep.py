"""`xlmr sweep`: XLM-R's ablation sweeps at demo scale (Conneau et al., 2020, §5 and Figures 2-5).

One command trains one demo-scale model per swept value and scores each on two cheap measures:

- per-language validation perplexity (`xlmr eval-mlm`'s code), averaged over the languages every
  run shares, and separately over the high- and low-resource halves of them (by training sentences);
- a transfer proxy: UDHR parallel-sentence retrieval accuracy (`xlmr eval-retrieval`'s code), mean of
  both directions over the non-pivot languages every run shares, at one layer and at the best layer.

Swept parameters (`--param`):

- `alpha`: the language-sampling exponent α of q_i ∝ p_i^α (paper: 0.01, 0.3, 0.7, 1.0; 0.3 best);
- `vocab`: the SentencePiece vocabulary size at fixed model size (paper: 32k…512k; 256k best); each value
  trains its own SentencePiece model and binarises the corpus again. Perplexities of different
  vocabularies count different units (pieces), so compare their retrieval column, not their ppl;
- `languages`: the number of languages at fixed capacity (the curse of multilinguality): value N trains
  on the first N of `--languages`; the measures average over the first min(values) languages only, so
  every point is scored on the same set.

Each run lands in `<out-dir>/<param>_<value>/` (checkpoints, train.log, model dir, scores.json); a run
whose scores.json exists is reused, so an interrupted sweep continues where it stopped. The sweep
writes `<out-dir>/sweep.json`, `sweep.md` and `sweep.png` (both measures against the swept value).
"""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from fairseq_xlmr.files import CHECKPOINT_FILE, DICT_FILE, SPM_FILE, parse_list, write_atomic, write_json
from fairseq_xlmr.tables import markdown_table

PARAMS = ("alpha", "vocab", "languages")
REPO = Path(__file__).resolve().parents[2]
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def run(args) -> int:
    values = parse_values(args.param, args.values)
    languages = parse_list(args.languages, "--languages") if args.languages else None
    sweep = Sweep(param=args.param, values=values, out_dir=Path(args.out_dir), data_bin=_path(args.data_bin),
                  spm_dir=_path(args.spm_dir), corpus_dir=_path(args.corpus_dir), languages=languages,
                  udhr_dir=_path(args.udhr_dir), pivot=args.pivot, retrieval_layer=args.retrieval_layer,
                  max_update=args.max_update, warmup_updates=args.warmup_updates, seed=args.seed,
                  config_dir=Path(args.config_dir), config_name=args.config_name, overrides=args.override,
                  spm_sample_sentences=args.spm_sample_sentences, valid_lines=args.valid_lines,
                  workers=args.workers, cpu=args.cpu)
    sweep.run()
    return 0


def _path(value: Optional[str]) -> Optional[Path]:
    return Path(value).resolve() if value else None


# --------------------------------------------------------------------------- pure helpers


def parse_values(param: str, text: str) -> List[float]:
    """`--values` as numbers, checked against the parameter's range (ValueError names the rule)."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--values must be a comma list of numbers, got {text!r}; e.g. 0.01,0.3,0.7,1.0.") from None
    if len(values) < 2:
        raise ValueError(f"--values needs at least 2 values to sweep, got {text!r}.")
    if len(set(values)) != len(values):
        raise ValueError(f"--values lists a value twice: {text!r}.")
    if param == "alpha":
        bad = [v for v in values if not 0.0 < v <= 1.0]
        rule = "in (0, 1] (XLM-R's figure: 0.01,0.3,0.7,1.0)"
    else:
        bad = [v for v in values if v != int(v) or v < (4 if param == "vocab" else 1)]
        rule = ("whole numbers > 3 (pieces; the demo uses 8000)" if param == "vocab"
                else "whole numbers >= 1 (how many of --languages to train on)")
        values = [int(v) for v in values]
    if bad:
        raise ValueError(f"--values for --param {param} must be {rule}; got {', '.join(map(str, bad))}.")
    return sorted(values)


def mean(values: Sequence[float]) -> Optional[float]:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def split_by_resource(sentences: Dict[str, int], languages: Sequence[str]):
    """(high, low): `languages` split at the median of their training sentences (high gets the odd one)."""
    ranked = sorted(languages, key=lambda lang: (-sentences[lang], lang))
    half = (len(ranked) + 1) // 2
    return ranked[:half], ranked[half:]


def summarize(scores: Dict, languages: Sequence[str], high: Sequence[str], low: Sequence[str],
              pivot: str) -> Dict:
    """One run's headline numbers over `languages` (the set every run of the sweep shares).

    scores: {"ppl": {lang: ppl}, "retrieval": {"layers": [...], "layer": k, "accuracy": {lang: [per layer]}}}
    """
    ppl = scores["ppl"]
    row = {"ppl": mean([ppl.get(lang) for lang in languages]),
           "ppl_high": mean([ppl.get(lang) for lang in high]),
           "ppl_low": mean([ppl.get(lang) for lang in low])}
    retrieval = scores.get("retrieval")
    if retrieval:
        langs = [lang for lang in languages if lang != pivot and lang in retrieval["accuracy"]]
        per_layer = [mean([retrieval["accuracy"][lang][i] for lang in langs]) for i in range(len(retrieval["layers"]))]
        if langs:
            row["retrieval"] = per_layer[retrieval["layers"].index(retrieval["layer"])]
            row["retrieval_best"] = max(per_layer)
            row["retrieval_best_layer"] = retrieval["layers"][per_layer.index(max(per_layer))]
            row["retrieval_layer"] = retrieval["layer"]
    return row


def format_markdown(param: str, rows: List[Dict], info: Dict) -> str:
    """The sweep table: one row per value."""
    has_retrieval = any("retrieval" in row for row in rows)
    header = [param, "mean ppl", "ppl high-res.", "ppl low-res."]
    if has_retrieval:
        header += [f"UDHR retrieval % (layer {rows[0].get('retrieval_layer', '?')})", "best layer %"]
    table = []
    for row in rows:
        cells = [_fmt_value(row["value"]), _fmt(row["ppl"]), _fmt(row["ppl_high"]), _fmt(row["ppl_low"])]
        if has_retrieval:
            best = row.get("retrieval_best")
            cells += [_fmt(row.get("retrieval")),
                      f"{best:.1f} (layer {row['retrieval_best_layer']})" if best is not None else "-"]
        table.append(cells)
    lines = markdown_table(header, table)
    notes = [f"Scored on {len(info['languages'])} languages: {', '.join(info['languages'])} "
             f"(high-resource: {', '.join(info['high']) or '-'}; low-resource: {', '.join(info['low']) or '-'}); "
             f"{info['max_update']} updates per run, recipe `{info['config_name']}`."]
    if param == "vocab":
        notes.append("Perplexities of different vocabularies count different pieces: compare retrieval.")
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def _fmt_value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def plot_sweep(param: str, rows: List[Dict], path: Path) -> None:
    """Perplexity (left) and retrieval (right) against the swept value, as the paper's figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [row["value"] for row in rows]
    has_retrieval = any(row.get("retrieval") is not None for row in rows)
    fig, axes = plt.subplots(1, 2 if has_retrieval else 1, figsize=(10 if has_retrieval else 5.5, 4))
    axes = list(axes) if has_retrieval else [axes]
    for key, label, style in (("ppl", "all", "k-o"), ("ppl_high", "high-resource", "b--s"),
                              ("ppl_low", "low-resource", "r--^")):
        axes[0].plot(xs, [row[key] for row in rows], style, label=label)
    axes[0].set_ylabel("validation perplexity (mean)")
    axes[0].legend(fontsize=8)
    if has_retrieval:
        axes[1].plot(xs, [row.get("retrieval") for row in rows], "g-o",
                     label=f"layer {rows[0].get('retrieval_layer')}")
        axes[1].plot(xs, [row.get("retrieval_best") for row in rows], "g:^", label="best layer")
        axes[1].set_ylabel("UDHR retrieval accuracy (%)")
        axes[1].legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel({"alpha": "language sampling α", "vocab": "vocabulary size (pieces)",
                       "languages": "number of languages (fixed capacity)"}[param])
        if param == "vocab":
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    fig.suptitle(f"Demo-scale sweep of {param}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- driver


class Sweep:
    def __init__(self, param: str, values: Sequence, out_dir: Path, data_bin: Optional[Path] = None,
                 spm_dir: Optional[Path] = None, corpus_dir: Optional[Path] = None,
                 languages: Optional[List[str]] = None, udhr_dir: Optional[Path] = None, pivot: str = "en",
                 retrieval_layer: int = -1, max_update: int = 300, warmup_updates: int = -1, seed: int = 1,
                 config_dir: Path = REPO / "hydra_configs" / "pretrain", config_name: str = "demo",
                 overrides: Sequence[str] = (), spm_sample_sentences: int = 100_000, valid_lines: int = 300,
                 workers: int = 1, cpu: bool = False, quiet: bool = False):
        self.param, self.values, self.out_dir = param, list(values), Path(out_dir).resolve()
        self.data_bin, self.spm_dir, self.corpus_dir, self.udhr_dir = data_bin, spm_dir, corpus_dir, udhr_dir
        self.pivot, self.retrieval_layer, self.seed = pivot, retrieval_layer, seed
        self.max_update = max_update
        self.warmup_updates = warmup_updates if warmup_updates >= 0 else max(1, max_update // 10)
        self.config_dir, self.config_name, self.overrides = Path(config_dir).resolve(), config_name, list(overrides)
        self.spm_sample_sentences, self.valid_lines, self.workers = spm_sample_sentences, valid_lines, workers
        self.cpu = cpu
        self.say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
        self._check()
        self.languages = self._resolve_languages(languages)
        if self.param == "languages" and max(self.values) > len(self.languages):
            raise ValueError(f"--values asks for {max(self.values)} languages but only {len(self.languages)} are "
                             f"available ({', '.join(self.languages)}); lower the values or add languages.")

    # -- checks, before any training

    def _check(self) -> None:
        if self.max_update < 1:
            raise ValueError(f"--max-update must be >= 1, got {self.max_update}.")
        if not (self.config_dir / f"{self.config_name}.yaml").is_file():
            missing = self.config_dir / f"{self.config_name}.yaml"
            raise ValueError(f"--config-name {self.config_name!r}: no {missing}; "
                             "pick a config of --config-dir (demo, debug, base, ...).")
        if self.param == "vocab":
            if self.corpus_dir is None or not self.corpus_dir.is_dir():
                raise ValueError(f"--param vocab trains SentencePiece per value and needs --corpus-dir with "
                                 f"<lang>.txt files; got {self.corpus_dir}. Use demo/corpus/mono.")
        else:
            for name, path in (("--data-bin", self.data_bin), ("--spm-dir", self.spm_dir)):
                if path is None or not path.is_dir():
                    raise ValueError(f"--param {self.param} reuses one binarised corpus: {name} must be a "
                                     f"directory, got {path}. Use demo/data-bin and demo/spm (`make demo`).")
            for name in (SPM_FILE, DICT_FILE):
                if not (self.spm_dir / name).is_file():
                    raise ValueError(f"--spm-dir {self.spm_dir} has no {name}; give the `xlmr train-spm` output "
                                     "that made --data-bin.")
        if self.udhr_dir is not None and not (self.udhr_dir / f"{self.pivot}.txt").is_file():
            raise ValueError(f"--udhr-dir {self.udhr_dir} has no {self.pivot}.txt for --pivot {self.pivot}; "
                             "give `xlmr fetch-corpora`'s udhr/ directory or drop --udhr-dir.")

    def _resolve_languages(self, languages: Optional[List[str]]) -> List[str]:
        if self.param == "vocab":
            found = sorted(p.stem for p in self.corpus_dir.glob("*.txt"))
            where = self.corpus_dir
        else:
            found = sorted(p.name for p in self.data_bin.iterdir() if (p / "train.idx").is_file())
            where = self.data_bin
        if languages is None:
            languages = sorted(found, key=lambda lang: (lang != self.pivot, lang))
        missing = [lang for lang in languages if lang not in found]
        if missing or not languages:
            raise ValueError(f"--languages {','.join(missing) or '(none)'} not found in {where} "
                             f"(has: {', '.join(found) or 'nothing'}); fix --languages or the directory.")
        return languages

    # -- per run

    def run_dir(self, value) -> Path:
        # No "=" or "," in the name: hydra's override grammar would misread the paths built from it.
        return self.out_dir / f"{self.param}_{_fmt_value(value)}"

    def run_languages(self, value) -> List[str]:
        return self.languages[:value] if self.param == "languages" else self.languages

    def run(self) -> Dict:
        from tqdm import tqdm

        start = time.perf_counter()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        scores = {}
        for value in tqdm(self.values, desc=f"sweep {self.param}", unit="run"):
            scores[value] = self.run_one(value)
        result = self.write(scores)
        self.say(format_markdown(self.param, result["rows"], result))
        self.say(f"[sweep] {len(self.values)} runs in {(time.perf_counter() - start) / 60:.1f} min; wrote "
                 f"{self.out_dir / 'sweep.md'}, sweep.json, sweep.png")
        return result

    def run_one(self, value) -> Dict:
        """Train (unless done before) and score one value; returns its scores.json content."""
        run_dir = self.run_dir(value)
        done = run_dir / "scores.json"
        if done.is_file():
            self.say(f"[sweep] {run_dir.name}: reusing {done}")
            return json.loads(done.read_text())
        run_dir.mkdir(parents=True, exist_ok=True)
        data_bin, spm_dir = self.prepare_data(value, run_dir)
        self.train(value, run_dir, data_bin)
        model_dir = make_model_dir(run_dir / "checkpoints" / "checkpoint_last.pt", spm_dir, run_dir / "model")
        scores = {"value": value, "languages": self.run_languages(value),
                  "sentences": train_sentences(data_bin, self.run_languages(value)),
                  "ppl": self.perplexity(run_dir / "checkpoints" / "checkpoint_last.pt", data_bin)}
        if self.udhr_dir is not None and self.pivot in scores["languages"]:
            scores["retrieval"] = self.retrieval(model_dir, scores["languages"])
        write_json(done, scores)
        return scores

    def prepare_data(self, value, run_dir: Path):
        """(data-bin, spm dir) of one run: the shared ones, or (vocab sweep) its own."""
        if self.param != "vocab":
            return self.data_bin, self.spm_dir
        from fairseq_xlmr.preprocess.binarize import binarize
        from fairseq_xlmr.preprocess.spm import train_spm

        spm_dir, data_bin = run_dir / "spm", run_dir / "data-bin"
        self.say(f"[sweep] {run_dir.name}: SentencePiece {value} pieces + binarisation")
        train_spm(corpus_dir=self.corpus_dir, out_dir=spm_dir, languages=self.languages, vocab_size=int(value),
                  sample_sentences=self.spm_sample_sentences, seed=self.seed, num_threads=self.workers, quiet=True)
        binarize(corpus_dir=self.corpus_dir, spm_model=spm_dir / SPM_FILE, dest_dir=data_bin,
                 languages=self.languages, workers=self.workers, valid_lines=self.valid_lines, overwrite=True,
                 quiet=True)
        return data_bin, spm_dir

    def train_command(self, value, run_dir: Path, data_bin: Path) -> List[str]:
        """fairseq-hydra-train on the shared recipe, with only the swept value and the run's paths changed."""
        exe = Path(sys.executable).parent / "fairseq-hydra-train"
        overrides = [
            f"common.user_dir={PACKAGE_DIR}", f"task.data={data_bin}", f"common.seed={self.seed}",
            f"++task.languages='{','.join(self.run_languages(value))}'",  # quoted: a bare comma list is a hydra sweep
            f"checkpoint.save_dir={run_dir / 'checkpoints'}", f"common.log_file={run_dir / 'train.log'}",
            f"hydra.run.dir={run_dir / 'hydra'}", f"optimization.max_update={self.max_update}",
            f"lr_scheduler.warmup_updates={self.warmup_updates}",
            # One validation and one checkpoint, at the end: the sweep reads only the final model.
            f"dataset.validate_interval_updates={self.max_update}",
            f"checkpoint.save_interval_updates={self.max_update}",
        ]
        if self.param == "alpha":
            overrides.append(f"++task.multilang_sampling_alpha={value}")
        if self.cpu or not _cuda():
            overrides.append("common.cpu=true")
        return [str(exe), "--config-dir", str(self.config_dir), "--config-name", self.config_name,
                *overrides, *self.overrides]

    def train(self, value, run_dir: Path, data_bin: Path) -> None:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # a half-finished run starts over
        (run_dir / "train.log").unlink(missing_ok=True)
        command = self.train_command(value, run_dir, data_bin)
        self.say(f"[sweep] {run_dir.name}: training {self.max_update} updates ({run_dir / 'train.out'})")
        with open(run_dir / "train.out", "w") as out:
            code = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        if code != 0 or not (run_dir / "checkpoints" / "checkpoint_last.pt").is_file():
            tail = (run_dir / "train.out").read_text(errors="replace").splitlines()[-25:]
            raise RuntimeError(f"training {run_dir.name} failed (exit {code}); last lines of "
                               f"{run_dir / 'train.out'}:\n" + "\n".join(tail))

    def perplexity(self, checkpoint: Path, data_bin: Path) -> Dict[str, float]:
        from fairseq_xlmr.evaluation.mlm_eval import evaluate

        results = evaluate(str(checkpoint), data=str(data_bin))["trained"]
        return {lang: r["ppl"] for lang, r in results.items()}

    def retrieval(self, model_dir: Path, languages: Sequence[str]) -> Dict:
        from fairseq_xlmr.evaluation.retrieval import evaluate_pairs, model_embedder, read_aligned
        from fairseq_xlmr.hub import XlmrHubInterface

        available = {p.stem for p in self.udhr_dir.glob("*.txt")}
        langs = [lang for lang in languages if lang != self.pivot and lang in available]
        hub = XlmrHubInterface.from_pretrained(str(model_dir))
        num_layers = len(hub.model.encoder.sentence_encoder.layers)
        layer = num_layers // 2 if self.retrieval_layer < 0 else self.retrieval_layer
        if not 0 <= layer <= num_layers:
            raise ValueError(f"--retrieval-layer {layer}: the model has layers 0..{num_layers}.")
        layers = list(range(num_layers + 1))
        results = evaluate_pairs(model_embedder(hub, layers), read_aligned(self.udhr_dir, self.pivot, langs), layers,
                                 backend="torch")
        accuracy = {lang: [(a + b) / 2 for a, b in zip(acc["to_pivot"], acc["from_pivot"])]
                    for lang, acc in results["accuracy"]["cosine"].items()}
        return {"layers": layers, "layer": layer, "scoring": "cosine", "accuracy": accuracy}

    # -- outputs

    def write(self, scores: Dict) -> Dict:
        # Every point is scored on the languages all runs share (languages sweep: the smallest run's).
        common = [lang for lang in self.languages if all(lang in s["languages"] for s in scores.values())]
        sentences = {}
        for s in scores.values():
            sentences.update(s["sentences"])
        high, low = split_by_resource(sentences, common)
        rows = [{"value": value, **summarize(s, common, high, low, self.pivot)} for value, s in scores.items()]
        result = {"param": self.param, "languages": common, "high": high, "low": low, "max_update": self.max_update,
                  "config_name": self.config_name, "seed": self.seed, "rows": rows,
                  "runs": {_fmt_value(v): s for v, s in scores.items()}}
        write_json(self.out_dir / "sweep.json", result)
        write_atomic(self.out_dir / "sweep.md", format_markdown(self.param, rows, result))
        plot_sweep(self.param, rows, self.out_dir / "sweep.png")
        return result


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def train_sentences(data_bin: Path, languages: Sequence[str]) -> Dict[str, int]:
    """{lang: training sentences} from the .idx headers of `xlmr binarize`'s output."""
    from fairseq.data.indexed_dataset import MMapIndexedDataset

    counts = {}
    for lang in languages:
        index = MMapIndexedDataset.Index(str(Path(data_bin) / lang / "train.idx"))
        counts[lang] = len(index)
        del index
    return counts


def make_model_dir(checkpoint: Path, spm_dir: Path, model_dir: Path) -> Path:
    """A model dir (`files.MODEL_DIR_FILES`, the hub's layout) from a training checkpoint."""
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(checkpoint, model_dir / CHECKPOINT_FILE)
    for name in (DICT_FILE, SPM_FILE):
        shutil.copyfile(Path(spm_dir) / name, model_dir / name)
    return model_dir
