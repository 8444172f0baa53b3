"""Scorers and reports: per-language MLM perplexity, fine-tuning and QA evaluation, retrieval, metrics, results.json,
the paper-style report and plots.
"""
