"""Registered models only: `xlmr_encoder` and its architectures."""
