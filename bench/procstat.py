"""CPU time and peak memory of a process we started, straight from /proc (Linux only)."""

from __future__ import annotations

import os

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Every process the bench started, so the results can show (and a test check) that each one
# was stopped.
STARTED: list[int] = []


def remember(pid: int) -> int:
    STARTED.append(pid)
    return pid


def alive(pid: int) -> bool:
    """Still running (a zombie, already exited but not reaped, counts as stopped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def cpu_seconds(pid: int, reaped_children: bool = False) -> float:
    """User + system CPU seconds the process has used so far (its threads included), and
    with ``reaped_children`` those of its children it has waited for."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    cutime, cstime = (int(fields[13]), int(fields[14])) if reaped_children else (0, 0)
    return (utime + stime + cutime + cstime) / CLOCK_TICKS


def peak_rss_bytes(pid: int) -> int:
    """VmHWM: the most resident memory the process has had."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def rss_bytes(pid: int) -> int:
    """VmRSS: resident memory now; 0 for a process gone meanwhile."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return 0


def tree(pid: int) -> list[int]:
    """The process and all its descendants alive now (Celery's pool children, Dramatiq's
    worker processes), found through each process's parent in /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of the whole tree: each live process's own, plus what its children that
    already exited and were reaped had used (cutime + cstime)."""
    total = 0.0
    for member in tree(pid):
        try:
            total += cpu_seconds(member, reaped_children=True)
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited between the listing and the read
    return total


def tree_peak_rss_bytes(pid: int) -> int:
    """Sum of each live process's VmHWM: an upper bound of the tree's peak (forked children
    share pages with their parent, and their peaks need not coincide)."""
    total = 0
    for member in tree(pid):
        try:
            total += peak_rss_bytes(member)
        except (FileNotFoundError, ProcessLookupError, RuntimeError):
            continue
    return total
