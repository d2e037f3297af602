"""README's architecture is the tree: every module of the package is named in its layout."""

from __future__ import annotations

import re
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
LAYOUT_START = "The tree shows the layers; each module holds one concept::"


def layout() -> str:
    text = (TOP / "README.rst").read_text()
    block = text[text.index(LAYOUT_START) + len(LAYOUT_START):]
    return block[:re.search(r"\n\S", block).start()]  # the indented literal block


def test_every_module_and_package_is_in_readmes_layout():
    named = set(re.findall(r"[\w]+\.py|[\w]+/", layout()))
    package = TOP / "workers"
    modules = {p.name for p in package.rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py")}
    packages = {f"{p.name}/" for p in package.iterdir() if (p / "__init__.py").exists()}
    assert sorted(modules - named) == []
    assert sorted(packages - named) == []
