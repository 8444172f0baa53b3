"""Conversions between our model directories and foreign layouts: HF transformers (XLM-R, BERT family), XLM-R's
released vocabulary, pretrained encoders from package registries.
"""
