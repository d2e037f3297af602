"""Each queue is declared once (workers/core/events.py) and has one handler module;
conf/supervisord.conf, the operators'
declaration of processes, must run exactly those (and the read API), and each queue's metrics
ports stay where they were."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
from pathlib import Path

import workers
from workers import queues
from workers.core import events
from workers.core.events import Analytics, Email, PostSent, Publish, Push
from workers.core.settings import LINKS_API_PROGRAM, Settings
from workers.ops import scale
from workers.runtime.health import port_for

TOP = Path(__file__).resolve().parent.parent
# Programs of conf/supervisord.conf that are no queue: the read API (scaled like a queue's
# daemons) and the one-shot `workers scale` that starts each program's processes.
NOT_QUEUES = {LINKS_API_PROGRAM, "workers-scale"}


def programs() -> dict[str, dict[str, str]]:
    """supervisord's programs and the templates `workers scale` writes programs from."""
    conf = configparser.RawConfigParser()
    conf.read(TOP / "conf" / "supervisord.conf")
    return {s.split(":", 1)[1]: dict(conf[s]) for s in conf.sections()
            if s.startswith(("program:", "fleet-program:"))}


def test_queues_keep_their_order_and_schemas():
    # publish came last, in its own port block, so no other queue's metrics port moved.
    assert workers.QUEUES == ("post-sent", "analytics", "push", "email", "publish")
    schemas = {q.name: q.schema for q in events.DECLARED}
    assert schemas == {"post-sent": PostSent, "analytics": Analytics, "push": Push,
                       "email": Email, "publish": Publish}


def test_every_declared_queue_has_a_program_and_every_program_a_queue():
    found = programs()
    assert set(found) - NOT_QUEUES == set(workers.QUEUES)
    for queue in workers.QUEUES:
        program = found[queue]
        assert re.search(rf"\srun {queue}(\s|$)", program["command"])
        assert program["environment"] == 'WORKERS_PROCESS_NUM="%(process_num)d"'


def test_metrics_ports_are_each_queues_own_and_stay_where_they_were():
    assert [port_for(9100, q, 0) for q in workers.QUEUES] == [9100, 9200, 9300, 9400, 9500]
    blocks = [q.port_block for q in events.DECLARED]
    assert len(set(blocks)) == len(blocks)


def test_default_processes_come_from_the_declarations():
    settings = Settings.from_env({"WORKERS_PUSH_PROCS": "3", "WORKERS_EMAIL_MAX_PROCS": "x"})
    assert {p: settings.procs_for(p, n) for p, n in scale.DEFAULT_PROCS.items()} == {
        "post-sent": 2, "analytics": 1, "push": 3, "email": 1, "publish": 1,
        LINKS_API_PROGRAM: 1}


def test_importing_workers_loads_no_handler():
    """The registry loads every handler's dependencies (boto3, pydantic...): only when read."""
    code = ("import sys, workers.cli; "
            "print(any(m.startswith('workers.queues.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_every_declared_queue_has_its_handler_module_wired():
    assert tuple(queues.BUILDS) == workers.QUEUES
