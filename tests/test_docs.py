"""The package's map is the tree: every module and package is named in the layout of
workers/__init__.py's docstring (README.rst and docs/ tell the rest)."""

from __future__ import annotations

import re
from pathlib import Path

import workers

TOP = Path(__file__).resolve().parent.parent
LAYOUT_START = "The tree shows the layers; each module holds one concept::"


def layout() -> str:
    text = workers.__doc__ or ""
    block = text[text.index(LAYOUT_START) + len(LAYOUT_START):]
    return block[:re.search(r"\n\S", block).start()]  # the indented literal block


def test_every_module_and_package_is_in_the_package_s_layout():
    named = set(re.findall(r"[\w]+\.py|[\w]+/", layout()))
    package = TOP / "workers"
    modules = {p.name for p in package.rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py")}
    packages = {f"{p.parent.name}/" for p in package.rglob("__init__.py") if p.parent != package}
    assert sorted(modules - named) == []
    assert sorted(packages - named) == []
