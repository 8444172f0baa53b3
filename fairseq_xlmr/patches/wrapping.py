"""Replace an attribute of a fairseq module once, however often the plugin is imported."""

MARK = "_xlmr_patch"


def replace(owner, name: str, make) -> None:
    """Set `owner.name` to `make(original)`, unless it is already our replacement.

    fairseq looks every patched function up as a module attribute at call time, so replacing the
    attribute is enough; the mark keeps a second import (tests, `--user-dir` after a plain import)
    from wrapping the wrapper.
    """
    original = getattr(owner, name)
    if getattr(original, MARK, False):
        return
    replacement = make(original)
    setattr(replacement, MARK, True)
    setattr(owner, name, replacement)
