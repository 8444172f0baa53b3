"""Building blocks of the model and the criteria: contrastive losses, pooling, gradient reversal, token packing,
the frozen-states cache.
"""
