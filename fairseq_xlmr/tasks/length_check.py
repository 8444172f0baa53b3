"""The one check every task makes after building its model: inputs must fit the position table."""


def check_fits_model(model, length, field, fix):
    """Raise when task.<field> = `length` exceeds the model's max_positions; return max_positions.

    fairseq would otherwise skip (training) or fail on (validation) every longer sample.
    """
    max_positions = model.max_positions()
    if isinstance(max_positions, int) and length > max_positions:
        raise ValueError(f"`task.{field}` must not exceed the model's max_positions, got {length} > "
                         f"{max_positions}; {fix}")
    return max_positions
