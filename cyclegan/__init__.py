"""cyclegan: unpaired image-to-image translation that tells you when training works.

The public API: ``Config`` and its presets, ``train`` a run folder, ``Translator`` to apply it.
``train`` and ``Translator`` are imported on first use (PEP 562), since they pull in torch: importing
the package, as the command line does before it parses its arguments, stays fast.
"""

import sys
import types
from typing import TYPE_CHECKING, Any

from .config import Config, ModelConfig, TrainConfig, preset
from .errors import CycleGANError

if TYPE_CHECKING:
    from .train.loop import train
    from .translate.translator import Translator

__version__ = "0.1.0"

__all__ = ["Config", "ModelConfig", "TrainConfig", "preset", "train", "Translator", "CycleGANError", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "train":
        from .train.loop import train
        return train
    if name == "Translator":
        from .translate.translator import Translator
        return Translator
    raise AttributeError(f"module 'cyclegan' has no attribute {name!r}")


class _Package(types.ModuleType):
    """Importing the subpackage ``cyclegan.train`` sets the attribute ``train`` to it; the public
    name ``train`` is the function, so that attribute is left to ``__getattr__`` above."""

    def __setattr__(self, name: str, value: Any) -> None:
        if not (name == "train" and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
