"""Lazy exports for the packages' ``__init__`` (PEP 562): a name's module is imported on first use.

The napari side imports the plugin at start-up, and torch takes seconds to import
(tests/test_lazy_imports.py): a package that imported all its modules to export their names would
import torch with the first of them.
"""

from __future__ import annotations

import importlib
import sys


def lazy_exports(package: str, modules: dict[str, list[str]]):
    """``(__getattr__, __dir__, __all__)`` for `package`, whose names live in `modules` (relative paths)."""
    where = {name: module for module, names in modules.items() for name in names}
    # Importing a submodule sets the package attribute of its name, which would hide an export of that name.
    clash = sorted(n for n in where if any(m.split(".")[1] == n for m in modules))
    if clash:
        raise ValueError(f"{package}: {clash} name submodules too; import them from their module")

    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name], package), name)
        setattr(sys.modules[package], name, value)  # the next access is a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__, sorted(where)
