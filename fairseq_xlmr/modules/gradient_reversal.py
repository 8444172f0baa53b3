"""Gradient reversal layer (Ganin & Lempitsky, 2015): identity forward, gradient × (−λ) backward.

Put between an encoder and an adversary (here a language classifier): the adversary learns to
predict the language while the encoder receives the opposite gradient and unlearns it.
"""

import torch


class GradientReversal(torch.autograd.Function):
    """y = x; dL/dx = −λ · dL/dy. λ is a Python float (no gradient flows into it)."""

    @staticmethod
    def forward(ctx, x, lambd: float):
        ctx.lambd = float(lambd)
        return x.view_as(x)  # a new view, so autograd records this node even though values are unchanged

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output.neg() * ctx.lambd, None


def reverse_gradient(x: torch.Tensor, lambd: float) -> torch.Tensor:
    """x of any shape, returned unchanged; its gradient comes back multiplied by −`lambd`."""
    return GradientReversal.apply(x, lambd)
