"""cyclegan: unpaired image-to-image translation that tells you when training works.

The public API: ``Config`` and its presets, ``train`` a run folder, ``Translator`` to apply it.
"""

from .config import Config, ModelConfig, TrainConfig, preset
from .errors import CycleGANError
from .train.loop import train
from .translate.translator import Translator

__version__ = "0.1.0"

__all__ = ["Config", "ModelConfig", "TrainConfig", "preset", "train", "Translator", "CycleGANError", "__version__"]
