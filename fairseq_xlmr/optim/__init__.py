"""Registered optimizers only: `xlmr_fused_adam`."""
