"""What ``cyclegan app`` and ``python app.py`` can be told: the settings and their flags.

Apart from server.py so that the command line's parser can add these flags without importing
Gradio or torch (``cyclegan --help`` answers at once, issue 25).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError


@dataclass
class AppSettings:
    """Everything ``cyclegan app`` / ``python app.py`` can be told."""

    checkpoints: Path = Path("checkpoints")
    datasets: Path = Path("datasets")
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    device: str = "auto"
    max_models: int = 2
    concurrency: int = 2
    queue_size: int = 64
    max_side: int = 1024
    max_upload_mb: float = 20.0
    max_megapixels: float = 40.0
    poll_seconds: float = 1.5


def add_app_arguments(parser: argparse.ArgumentParser) -> None:
    """The app's flags, shared by ``python app.py`` and ``cyclegan app``."""
    d = AppSettings()
    parser.add_argument("--checkpoints", type=Path, default=d.checkpoints, help="folder of run folders (default: checkpoints)")
    parser.add_argument("--datasets", type=Path, default=d.datasets, help="folder of datasets (default: datasets)")
    parser.add_argument("--host", default=d.host, help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=d.port, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also create a public gradio.live link (off by default)")
    parser.add_argument("--device", default=d.device, help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--max-models", type=int, default=d.max_models, help="models kept loaded (default 2)")
    parser.add_argument("--concurrency", type=int, default=d.concurrency,
                        help="translations run at once; more requests wait in the queue (default 2)")
    parser.add_argument("--max-side", type=int, default=d.max_side,
                        help="larger uploads are resized to this many pixels on their long side (default 1024)")
    parser.add_argument("--max-upload-mb", type=float, default=d.max_upload_mb, help="upload size limit (default 20)")


def settings_from_args(args: argparse.Namespace) -> AppSettings:
    for name, minimum in (("max_models", 1), ("concurrency", 1), ("max_side", 16), ("port", 1)):
        if getattr(args, name) < minimum:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least {minimum}, got {getattr(args, name)}")
    return AppSettings(checkpoints=args.checkpoints, datasets=args.datasets, host=args.host, port=args.port,
                       share=args.share, device=args.device, max_models=args.max_models,
                       concurrency=args.concurrency, max_side=args.max_side, max_upload_mb=args.max_upload_mb)
