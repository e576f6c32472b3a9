"""What ``cyclegan app`` and ``python app.py`` can be told: the settings and their flags.

Apart from server.py so that the command line's parser can add these flags without importing
Gradio or torch (``cyclegan --help`` answers at once, issue 25).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

AUTH_ENV = "CYCLEGAN_APP_AUTH"  # USER:PASS, for --auth without the password on the command line


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
    auth: tuple[str, str] | None = None  # (user, password) for Gradio's own login page
    trust_network: bool = False  # serve beyond this machine without auth, knowingly


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
    parser.add_argument("--auth", metavar="USER:PASS",
                        help=f"ask for this user name and password (Gradio's login page); needed with a --host other "
                             f"than 127.0.0.1 and with --share. ${AUTH_ENV} is read when it is not given, which "
                             "keeps the password out of the process list")
    parser.add_argument("--trust-network", action="store_true",
                        help="serve a --host beyond this machine without --auth: everyone who can reach it may "
                             "translate, and train on this machine")


def settings_from_args(args: argparse.Namespace) -> AppSettings:
    for name, minimum in (("max_models", 1), ("concurrency", 1), ("max_side", 16), ("port", 1)):
        if getattr(args, name) < minimum:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least {minimum}, got {getattr(args, name)}")
    auth = _auth(args.auth or os.environ.get(AUTH_ENV))
    exposed = "--share" if args.share else None if _loopback(args.host) else f"--host {args.host}"
    if exposed and auth is None and not args.trust_network:
        raise ConfigError(f"{exposed} lets anyone who can reach it use the app, its Train tab included; add --auth "
                          "USER:PASS (or set $" + AUTH_ENV + "), or --trust-network if the network is yours alone")
    return AppSettings(checkpoints=args.checkpoints, datasets=args.datasets, host=args.host, port=args.port,
                       share=args.share, device=args.device, max_models=args.max_models,
                       concurrency=args.concurrency, max_side=args.max_side, max_upload_mb=args.max_upload_mb,
                       auth=auth, trust_network=args.trust_network)


def _auth(text: str | None) -> tuple[str, str] | None:
    """``USER:PASS`` as (user, password); None when not given."""
    if not text:
        return None
    user, _, password = text.partition(":")
    if not user or not password:
        raise ConfigError("--auth takes USER:PASS, both non-empty (the password may contain ':')")
    return user, password


def _loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (127.0.0.0/8, ::1, localhost); 0.0.0.0 is every interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False
