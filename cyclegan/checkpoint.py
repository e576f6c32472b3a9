"""The run folder on disk: config.json, safetensors weights, train_state.pt, all written atomically.

Every file goes to a temporary name in the same folder, is flushed and fsync'd, then renamed over
the old one, so a crash or kill at any moment leaves the previous good file readable. Weights are
safetensors (loading never runs pickled code); train_state.pt holds only tensors and plain values
and is read with ``torch.load(weights_only=True)``. train_state.pt carries its own copy of the four
networks, written last: whatever moment a kill interrupts a save, it and the networks in it agree,
so resuming is exact even when the *.safetensors beside it were already replaced.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save
from torch import nn

from .config import Config
from .errors import CheckpointError

GENERATORS = ("G_AB", "G_BA")
DISCRIMINATORS = ("D_A", "D_B")
CONFIG_FILE = "config.json"
STATE_FILE = "train_state.pt"
BEST_DIR = "best"
_STATE_KEYS = {"epoch", "batch", "step", "models", "opt_G", "opt_D"}  # what train_state.pt must hold to resume


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_weights(net: nn.Module, path: Path, step: int) -> None:
    """One network as safetensors; ``step`` goes into the metadata to check a set is consistent."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    atomic_write_bytes(path, safetensors_save(state, metadata={"step": str(step)}))


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        return safetensors_load(Path(path).read_bytes())
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; the run folder is incomplete (was training stopped before "
                              "its first checkpoint?)") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc}); restore it or retrain") from None


def weights_step(path: Path) -> int | None:
    """The training step recorded in a weight file's metadata (None if absent)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            step = (f.metadata() or {}).get("step")
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc}); restore it or retrain") from None
    return int(step) if step is not None else None


def load_weights(net: nn.Module, path: Path) -> nn.Module:
    """Load ``path`` into ``net``, or raise CheckpointError saying which keys or shapes differ."""
    state = read_weights(path)
    check_state_dict(net, state, path)
    net.load_state_dict(state)
    return net


def check_state_dict(net: nn.Module, state: dict[str, torch.Tensor], source: str | Path,
                     against: str = "the network in config.json") -> None:
    """Raise CheckpointError naming the missing and unexpected keys and shape mismatches of ``state``."""
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_few(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches {_few(mismatched)}")
        raise CheckpointError(f"{source} does not match {against}: {'; '.join(parts)}")


def _few(items: list[str], shown: int = 3) -> str:
    more = f" (+{len(items) - shown} more)" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def save_state(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_state(path: Path) -> dict[str, Any]:
    """train_state.pt, checked to hold what an exact resume needs (networks, optimizers, position)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; this run cannot be resumed (it has no training state)") from None
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise CheckpointError(f"{path} cannot be read ({type(exc).__name__}: {exc}); this run cannot be "
                              "resumed, start a new one") from None
    missing = sorted(_STATE_KEYS - state.keys()) if isinstance(state, dict) else sorted(_STATE_KEYS)
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}; this run cannot be resumed, start a new one")
    return state


def load_config(run_dir: str | Path) -> Config:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run folder {run_dir} does not exist; train one with `cyclegan train --run {run_dir}`")
    return Config.load(run_dir / CONFIG_FILE)


def generator_path(run_dir: Path, name: str, best: bool = False) -> Path:
    return Path(run_dir) / (BEST_DIR if best else "") / f"{name}.safetensors"
