"""The docs a newcomer reads: a short README, Sphinx pages that build without a warning, an
architecture page that names every module, and a dependencies page that names every
dependency."""

from __future__ import annotations

import configparser
import io
import re
import subprocess
import sys
from pathlib import Path

import docutils.core
import pytest

TOP = Path(__file__).resolve().parent.parent
DOCS = TOP / "docs"
README_MAX_LINES = 300
LAYOUT_START = "Every module of the package, by package::"


def layout() -> str:
    text = (DOCS / "architecture.rst").read_text()
    block = text[text.index(LAYOUT_START) + len(LAYOUT_START):]
    end = re.search(r"\n\S", block)  # the indented literal block ends at the next text, if any
    return block[:end.start()] if end else block


def test_the_readme_stays_short():
    lines = (TOP / "README.rst").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES


def test_the_readme_renders_without_a_warning():
    # PyPI renders it too (setup.cfg's long_description), where a warning shows as raw text
    warnings = io.StringIO()
    docutils.core.publish_string((TOP / "README.rst").read_text(), writer_name="html",
                                 settings_overrides={"report_level": 2, "halt_level": 5,
                                                     "warning_stream": warnings})
    assert warnings.getvalue() == ""


def test_every_module_and_package_is_in_the_architecture_pages_list():
    named = set(re.findall(r"[\w]+\.py|[\w]+/", layout()))
    package = TOP / "workers"
    modules = {p.name for p in package.rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py")}
    packages = {f"{p.parent.name}/" for p in package.rglob("__init__.py") if p.parent != package}
    assert sorted(modules - named) == []
    assert sorted(packages - named) == []


def requirement_names() -> set[str]:
    setup = configparser.ConfigParser()
    setup.read(TOP / "setup.cfg")
    lines = [*setup["options"]["install_requires"].split("\n"),
             *setup["options.extras_require"]["test"].split("\n")]
    return {re.match(r"[A-Za-z0-9_.-]+", line.strip()).group(0).lower()
            for line in lines if line.strip()}


def test_the_dependencies_page_says_why_each_dependency_is_there():
    page = (DOCS / "dependencies.rst").read_text().lower()
    # a family's later members are written as its suffix: opentelemetry-api, -sdk...
    named = set(re.findall(r"``([a-z0-9_.-]+)(?:\[[a-z]+\])?``", page))
    family = {f"opentelemetry{suffix}" for suffix in re.findall(r"``(-[a-z0-9-]+)``", page)}
    assert sorted(requirement_names() - named - family) == []


@pytest.mark.timeout(240)
def test_the_docs_build_without_a_warning(tmp_path):
    # Given the pages, the benchmark results they render and Sphinx's own theme
    # When they are built as `make docs` builds them (-W: a warning fails the build)
    built = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(DOCS), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=230, cwd=TOP)
    # Then every page is there, and nothing was warned about
    assert built.returncode == 0, built.stderr[-3000:]
    assert (tmp_path / "html" / "benchmarks.html").exists()
