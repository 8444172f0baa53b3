"""Export the `make demo` model to HuggingFace and check that transformers fills masks as we do.

    .venv/bin/python examples/demo_to_hf.py [--demo-dir demo]

Builds a release-style directory (model.pt + dict.txt + sentencepiece.bpe.model) from the demo
run, runs `xlmr export-hf`, then compares the top-5 fill-mask predictions of our hub interface and of
`transformers.pipeline("fill-mask")` on sentences in several languages. Expected: identical top-5
pieces on every sentence, probabilities within 1e-4.
"""

import argparse
import shutil
from pathlib import Path

SENTENCES = [
    "The <mask> of the file is not valid.",
    "Die Datei <mask> nicht gefunden werden.",
    "Le fichier <mask> pas été trouvé.",
    "Не удалось открыть <mask>.",
    "El archivo <mask> existe.",
    "Dosya <mask> bulunamadı.",
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-dir", default="demo")
    args = parser.parse_args()
    demo = Path(args.demo_dir)

    from transformers import pipeline

    from fairseq_xlmr.hub import from_pretrained
    from fairseq_xlmr.interop.hf_export import export

    release = demo / "release"
    release.mkdir(exist_ok=True)
    shutil.copy(demo / "checkpoints" / "checkpoint_last.pt", release / "model.pt")
    for name in ("dict.txt", "sentencepiece.bpe.model"):
        shutil.copy(demo / "spm" / name, release / name)
    export(release, demo / "hf", overwrite=True)

    ours = from_pretrained(str(release))
    theirs = pipeline("fill-mask", model=str(demo / "hf"), tokenizer=str(demo / "hf"), top_k=5, device="cpu")
    agree = 0
    for sentence in SENTENCES:
        mine = ours.fill_mask(sentence, topk=5)
        hf = theirs(sentence)
        same = [ours.dictionary.index(p) for _, _, p in mine] == [r["token"] for r in hf]
        gap = max(abs(a[1] - r["score"]) for a, r in zip(mine, hf))
        agree += same and gap < 1e-4
        print(f"{'same' if same else 'DIFFERENT'} top-5 (max prob gap {gap:.1e}): {sentence}")
        print(f"    ours: {[p for _, _, p in mine]}")
    print(f"{agree}/{len(SENTENCES)} sentences agree (top-5 ids identical, probabilities within 1e-4)")
    return 0 if agree == len(SENTENCES) else 1


if __name__ == "__main__":
    raise SystemExit(main())
