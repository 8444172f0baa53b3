"""Dataset wrappers and pure data algorithms (language sampling, masking, label and span alignment, word pairs),
and readers of the standard fine-tuning formats.
"""
