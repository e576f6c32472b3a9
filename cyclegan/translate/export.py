"""Export one generator of a run as ONNX or TorchScript, for serving without this package.

The exported graph includes the padding the Translator does: it takes a float32 batch
``image`` (N, C, H, W) in [-1, 1] of any height and width of at least 8 pixels, reflect-pads it to
the generator's size multiple (4 for the ResNet), and returns ``translated`` of the same shape, cropped back. Batch, height and
width are dynamic. ONNX needs the ``export`` extra (``pip install cyclegan[export]``).
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .translator import MIN_SIDE, Translator, out_channels

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
_SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript"}


class PaddedGenerator(nn.Module):
    """A generator that accepts any size of at least 8x8: reflect-pad to its size multiple, translate, crop."""

    def __init__(self, net: nn.Module, multiple: int) -> None:
        super().__init__()
        self.net = net
        self.multiple = multiple

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2], image.shape[-1]
        pad_h = (self.multiple - height % self.multiple) % self.multiple
        pad_w = (self.multiple - width % self.multiple) % self.multiple
        out = self.net(F.pad(image, [0, pad_w, 0, pad_h], mode="reflect"))
        return out[:, :, :height, :width]


def format_for(out: Path, fmt: str | None) -> str:
    """The export format: ``fmt`` if given, else read off the file suffix (.onnx, .pt, .ts)."""
    if fmt is None:
        fmt = _SUFFIXES.get(out.suffix.lower())
        if fmt is None:
            raise ConfigError(f"cannot tell the format from {out.name}; pass --format onnx or torchscript")
    if fmt not in FORMATS:
        raise ConfigError(f"export format must be onnx or torchscript, got {fmt!r}")
    return fmt


def _onnx(model: nn.Module, example: torch.Tensor, target: Path) -> None:
    try:
        import onnx  # noqa: F401  (the exporter needs it; fail with our message, not deep inside torch)
        import onnxscript  # noqa: F401
    except ImportError:
        raise ConfigError("ONNX export needs the export extra: pip install 'cyclegan[export]'") from None
    side = torch.export.Dim.AUTO
    torch.onnx.export(model, (example,), str(target), input_names=["image"], output_names=["translated"],
                      dynamic_shapes={"image": {0: side, 2: side, 3: side}}, external_data=False,
                      dynamo=True, verbose=False)


def _torchscript(model: nn.Module, target: Path) -> None:
    # Deprecated upstream in favour of torch.export, but still what many C++ and mobile runtimes load.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
        torch.jit.save(torch.jit.script(model), str(target))


def export_generator(run: str | Path, direction: str, out: str | Path, fmt: str | None = None,
                     best: bool = False) -> Path:
    """Write the ``direction`` generator of run folder ``run`` to ``out``; returns ``out``.

    Written to a temporary file beside ``out`` first, so a failed export leaves no partial file.
    """
    out = Path(out)
    fmt = format_for(out, fmt)
    translator = Translator.from_run(run, device="cpu", best=best)
    net = translator.generator(direction)
    model = PaddedGenerator(net, translator.multiple).eval()
    example = torch.zeros(1, translator.input_channels(direction), 4 * MIN_SIDE + 1, 4 * MIN_SIDE + 3)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        if fmt == "onnx":
            _onnx(model, example, Path(tmp))
        else:
            _torchscript(model, Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes it private; an exported model is meant to be shared
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    log.info("exported %s %s generator to %s (%s, dynamic batch/height/width, input in [-1, 1])",
             run, direction, out, fmt)
    return out
