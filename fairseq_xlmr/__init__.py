"""fairseq_xlmr: XLM-R (Conneau et al., 2020) pretraining and analysis as a fairseq plugin.

`fairseq-train --user-dir fairseq_xlmr` imports this package. fairseq only auto-imports the
`tasks/` and `models/` folders of a user dir, so every registered component is imported here.
"""
