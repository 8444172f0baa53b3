"""Cross-lingual structure of trained encoders (Conneau, Wu et al., 2020): CKA, word translation, alignment of two
models' spaces, linear probes; the math in cka.py, bli.py, align.py and probe.py, each `xlmr analyze` run in its
*_report.py.
"""
