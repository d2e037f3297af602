"""Sphinx configuration of the workers docs: `make docs` builds them with warnings as errors."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

project = "workers"
author = "the workers engineers"
copyright = "2026, the workers engineers"

# benchtables renders the benchmark tables from bench/results/*.json: no figure typed by hand.
extensions = ["benchtables"]
root_doc = "index"
exclude_patterns = ["_build"]
html_theme = "alabaster"  # ships with Sphinx: nothing downloaded
# Wide enough for the benchmark tables and the diagrams' 100-column literal blocks.
html_theme_options = {"description": "An SQS worker fleet", "fixed_sidebar": True,
                      "page_width": "1240px", "sidebar_width": "230px",
                      "body_max_width": "none"}
# Commands in generated text (bench/bench.py --quick) stay as typed: no -- turned into a dash.
smartquotes = False
html_static_path = ["_static"]
html_css_files = ["workers.css"]

