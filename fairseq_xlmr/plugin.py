"""How fairseq_xlmr plugs into fairseq: its components register, and its patches apply, as soon as both
packages are imported, whichever comes first.

`import fairseq_xlmr` stays cheap (no torch, no fairseq) so that the `xlmr` command prints its help at
once. What fairseq needs (`fairseq_xlmr.components`) is imported at the first moment both are loaded:

- fairseq first (`fairseq-train --user-dir fairseq_xlmr`, `fairseq-hydra-train`, a script that imports
  fairseq and then us): `fairseq_xlmr/__init__.py` registers right away;
- fairseq_xlmr first (the `xlmr` command, `from fairseq_xlmr.hub import from_pretrained`, a test that
  imports a helper before running fairseq-train in-process, where fairseq's `import_user_module` does
  nothing because the package is already in `sys.modules`): a finder on `sys.meta_path` watches the
  imports of `fairseq` and of our own modules, and registers once an import of either has finished while
  none of our modules is still executing (registering in the middle of one would import its half-built
  self). The finder removes itself afterwards.
"""

import importlib.abc
import sys

_registered = False


def register() -> None:
    """Register every task, model, criterion and optimizer with fairseq and apply the patches (idempotent)."""
    global _registered
    if _registered:
        return
    _registered = True
    from fairseq_xlmr import components  # noqa: F401

    _finder.uninstall()


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Finds no module itself: wraps the loader of `fairseq` and of `fairseq_xlmr.*` modules that the other
    finders return, so that `register()` runs when such an import finishes and fairseq is loaded."""

    def __init__(self):
        self.executing = 0  # our modules whose code is running now (nested imports)

    def install(self) -> None:
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def uninstall(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)

    def find_spec(self, name, path=None, target=None):
        if name != "fairseq" and not name.startswith("fairseq_xlmr."):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader, self, ours=name != "fairseq")
                return spec
        return None

    def finished(self) -> None:
        if self.executing == 0 and "fairseq" in sys.modules:
            register()


class _Loader(importlib.abc.Loader):
    def __init__(self, loader, finder: _RegisterAfterImport, ours: bool):
        self.loader, self.finder, self.ours = loader, finder, ours

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.finder.executing += self.ours
        try:
            self.loader.exec_module(module)
        finally:
            self.finder.executing -= self.ours
        self.finder.finished()

    def __getattr__(self, name):  # get_resource_reader, is_package, get_source, ...: the wrapped loader's
        return getattr(self.loader, name)


_finder = _RegisterAfterImport()


def register_when_fairseq_is_loaded() -> None:
    if "fairseq" in sys.modules:
        register()
    else:
        _finder.install()
