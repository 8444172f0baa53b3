"""`xlmr analyze`: runs one of the analyses of Conneau, Wu et al. (2020), "Emerging Cross-lingual Structure in
Pretrained Language Models" (cka_report.py, bli_report.py, align_report.py, probe_report.py; `retrieve` is
evaluation/retrieval.py), once per language of a --lang-b/--tgt list; options: commands/analyze.py.
"""

import argparse
import json
import time
from pathlib import Path

from fairseq_xlmr.analysis import align_report, bli_report, cka_report, probe_report
from fairseq_xlmr.evaluation import retrieval
from fairseq_xlmr.evaluation.results import write_results
from fairseq_xlmr.files import parse_list


def run(args) -> int:
    """`xlmr analyze` with its parsed arguments: one analysis, once per language of a --lang-b/--tgt list."""
    if args.analysis == "retrieve":
        return retrieval.run(args)
    start = time.time()
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}.")
    analysis = {"cka": cka_report.run_cka, "bli": bli_report.run_bli, "align": align_report.run_align,
                "probe": probe_report.run_probe}[args.analysis]
    field = {"cka": "lang_b", "bli": "tgt"}.get(args.analysis)
    summary = run_per_language(args, analysis, field) if field else analysis(args)
    print(f"{summary}\nwrote {args.out_dir} in {time.time() - start:.0f}s")
    return 0


def run_per_language(args, run, field: str) -> str:
    """`run` once per language of the comma list in `args.<field>` (into OUT_DIR/<lang> when there are several);
    with --name, OUT_DIR/results.json holds each language's reported value (`reported_value`)."""
    languages = parse_list(getattr(args, field), "--" + field.replace("_", "-"))
    out, summaries, values = Path(args.out_dir), [], {}
    for lang in languages:
        one = argparse.Namespace(**{**vars(args), field: lang,
                                    "out_dir": str(out / lang) if len(languages) > 1 else args.out_dir})
        summaries.append(run(one))
        values[lang] = reported_value(args, Path(one.out_dir))
    if args.name:
        what = ("identity-map CSLS P@1" if args.analysis == "bli" and args.report_map == "identity" else
                f"{args.report_map} CSLS P@1" if args.analysis == "bli" else "linear CKA")
        write_results(out, args.name, 1, "accuracy" if args.analysis == "bli" else "cka",
                      {lang: value for lang, (value, _) in values.items()}, extra={
                          "measure": what, "layer": next(iter(values.values()))[1]})
    return "\n".join(summaries)


def reported_value(args, out_dir: Path):
    """(the value results.json reports, its layer) of one finished bli or cka run in `out_dir`."""
    if args.analysis == "bli":
        result = json.loads((out_dir / "bli.json").read_text())
        return result["precision"][args.report_map]["csls"]["1"], result["layer"]
    result = json.loads((out_dir / "cka.json").read_text())
    layer = len(result["diagonal"]) // 2 if args.report_layer is None else args.report_layer
    if not 0 <= layer < len(result["diagonal"]):
        raise ValueError(f"--report-layer {layer}: the models have layers 0..{len(result['diagonal']) - 1}.")
    return result["diagonal"][layer], layer
