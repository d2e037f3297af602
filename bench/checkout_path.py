"""Puts the checkout's top and tests/support on ``sys.path``. A bench script runs as ``python
bench/X.py``, which puts only bench/ there; it uses devstack (the local stack's stand-ins,
beside ``workers/`` but left out of the wheel, so not installed) and some of the tests' support
modules (one definition of each hostile client, the fleet's network namespaces).

Each script one runs imports it before anything of the checkout (``# isort: split`` keeps it
first); the modules they import find the path set. The tests get the same through pytest's
``pythonpath`` (setup.cfg)."""

from __future__ import annotations

import sys
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]

for _path in (str(TOP), str(TOP / "tests" / "support")):
    if _path not in sys.path:
        sys.path.insert(1, _path)  # after bench/ itself: a bench module is never shadowed
