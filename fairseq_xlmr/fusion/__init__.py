"""Model fusion: checkpoint averaging (distillation and adversarial training are criteria)."""
