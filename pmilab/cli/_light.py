"""One rule for the CLI's light imports: load a package's `config.py` without the package.

`pmilab --help`, `pmilab fit --help` and `pmilab pretrain --help` need only a config's fields,
defaults and presets, while the packages that hold them import torch (and transformers) on
import: seconds of CPU. `config.py` itself imports nothing heavy
(tests/cli/test_first_touch.py checks `sys.modules`).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def light_module(real: str, private: str, path: Path) -> ModuleType:
    """The module `real` if its package is imported already (a run, a test); otherwise the file
    `path` loaded once under the name `private`, so the copy never stands in for the real
    module elsewhere."""
    module = sys.modules.get(real)
    if module is not None:
        return module
    if private not in sys.modules:
        spec = importlib.util.spec_from_file_location(private, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[private] = module  # dataclasses looks its module up while building the class
        spec.loader.exec_module(module)
    return sys.modules[private]
