"""Drivers that train or compare models: fine-tuning over seeds, ablation sweeps, random-init twins, and where a
model stands among baselines.
"""
