"""The cyclegan web app: ``python app.py [--checkpoints DIR] [--datasets DIR] [--host 127.0.0.1] [--port 7860]``.

Thin on purpose: the UI and its handlers live in ``cyclegan.app`` (also ``cyclegan app``).
Binds 127.0.0.1 by default; a public share link is made only with ``--share``.
"""

import sys

from cyclegan.app.server import main

if __name__ == "__main__":
    sys.exit(main())
