"""The run directory (supervisord's socket, pid and logs; the scale file): private, or refused.

A directory anyone may write to (``/tmp``) lets another local user plant a symlink where we
are about to write (the scale file, supervisord's pid and log files) and have us write
through it, or run a socket of their own where ``workers scale`` looks for supervisord's.
So the run directory must be a real directory (not a symlink), owned by us, and writable by
no one else; we create it 0700 when it is missing. ``bin/supervisor-env`` checks the same
before supervisord starts. Files in it are written without following symlinks.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any


class RunDirError(Exception):
    """The run directory, or a file in it, is not safe to use; one line."""


def ensure_private(path: str | Path) -> Path:
    """``path`` as a directory only we can write to, created 0700 if missing; else
    RunDirError naming what is wrong."""
    path = Path(path)
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    try:
        info = path.lstat()
    except OSError as exc:
        raise RunDirError(f"run directory {path}: {exc.strerror}") from None
    check_private(path, info)
    return path


def check_private(path: Path, info: os.stat_result) -> None:
    if stat.S_ISLNK(info.st_mode):
        raise RunDirError(f"refusing run directory {path}: it is a symlink")
    if not stat.S_ISDIR(info.st_mode):
        raise RunDirError(f"refusing run directory {path}: not a directory")
    if info.st_uid != os.getuid():
        raise RunDirError(f"refusing run directory {path}: owned by uid {info.st_uid}, "
                          f"not by us (uid {os.getuid()})")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise RunDirError(f"refusing run directory {path}: writable by group or others "
                          f"(mode {stat.S_IMODE(info.st_mode):o}; chmod 700 it)")


def read_json(path: Path) -> Any:
    """The JSON in ``path``, None if it does not exist; a symlink there is refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _refused(path, exc) from None
    with os.fdopen(fd) as file:
        return json.load(file)


def write_json(path: Path, value: Any) -> None:
    """Writes ``value`` as JSON to ``path`` whole (``write_text``)."""
    write_text(path, json.dumps(value, indent=1, sort_keys=True) + "\n")


def write_text(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` whole: to a fresh temporary file beside it (created
    exclusively, so never through a planted link), then renamed over it, which replaces a
    symlink at ``path`` rather than follows it. A reader sees the old file or the new one."""
    if path.is_symlink():
        raise RunDirError(f"refusing to write {path}: it is a symlink")
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _refused(path: Path, exc: OSError) -> RunDirError:
    if path.is_symlink():
        return RunDirError(f"refusing to read {path}: it is a symlink")
    return RunDirError(f"cannot read {path}: {exc.strerror}")
