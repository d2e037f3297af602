"""The Makefile a newcomer runs first (as root, on Debian): what it installs stays lean."""

from __future__ import annotations

import re

from helpers import REPO


def test_every_apt_get_install_skips_recommends():
    # chromium's recommends alone (CUPS, avahi, upower...) are ~160 packages no test needs
    recipes = [line for line in (REPO / "Makefile").read_text().splitlines()
               if not line.lstrip().startswith("#")]
    installs = [m for line in recipes for m in re.findall(r"apt-get install[^;&|}]*", line)]
    assert len(installs) >= 4  # python3-venv, redis-server and faketime, chromium, wrk
    assert [i for i in installs if "--no-install-recommends" not in i] == []
