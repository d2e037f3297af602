"""Replay tasks: a filtered set of dead letters, frozen when the task starts, moved back to its
queue in the background, with progress, a rate, cancel, and a restart that resumes it.

Redis holds all of a task (so every console process sees it, and one killed midway loses
nothing): ``console:task:{ID}`` the task's fields, ``console:task:{ID}:ids`` its frozen
selection (message id -> pending or moved), both in one cluster slot by the ``{ID}`` tag.
The selection is written before the 202 is answered; a message that fails again comes back to
the DLQ under a new id, as does any dead letter arriving later, so neither is replayed by this
task. A runner holds ``console:task:{ID}:runner`` (a lease it renews); a console that finds a
running task whose lease lapsed (its console was killed) takes it over and resumes it.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Sequence, cast

from workers.adapters.redisconn import Client
from workers.ops.dlq import MOVED, PENDING, DeadLetters
from workers.runtime import logs

INDEX = "console:tasks"
RUNNING, COMPLETED, CANCELLED, FAILED = "running", "completed", "cancelled", "failed"
# The runner renews its lease at least this often; a lease this long lapses soon after its
# console dies, and the task is resumed by another console (or the same one, restarted).
LEASE_SECONDS = 15
# How often a console looks for tasks whose runner is gone.
ADOPT_SECONDS = 5
# The tasks listed: enough to see the day's.
KEEP_TASKS = 100
# A pass that found none of the selection waits this long for messages hidden by someone else
# (a browse, or a killed runner's last batch) to come back, before it gives up on them: a
# browse hides for seconds; a killed replay's batch for REPLAY_VISIBILITY_SECONDS.
MISSING_PATIENCE_SECONDS = 90


def key(task_id: str) -> str:
    return f"console:task:{{{task_id}}}"


@dataclass
class RedisSelection:
    """The frozen selection of one task (workers.ops.dlq.Selection)."""

    client: Client
    task_id: str

    @property
    def ids_key(self) -> str:
        return key(self.task_id) + ":ids"

    def states(self, ids: Sequence[str]) -> list[str | None]:
        values = self.client.hmget(self.ids_key, list(ids)) if ids else []
        return [_s(v) if v is not None else None for v in values]

    def mark_moved(self, ids: Sequence[str]) -> None:
        if ids:
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(self.ids_key, mapping=dict.fromkeys(ids, MOVED))
            pipe.hincrby(key(self.task_id), "moved", len(ids))
            pipe.execute()

    def pending(self) -> int:
        return sum(1 for v in self.client.hvals(self.ids_key) if _s(v) == PENDING)


class Tasks:
    """Starts, lists, cancels and runs replay tasks; ``letters(queue)`` gives a queue's
    DeadLetters (its own SQS client: runners run in threads)."""

    def __init__(self, client: Client, letters: Callable[[str], DeadLetters],
                 on_end: Callable[[dict[str, Any]], None] = lambda task: None):
        self.client = client
        self.letters = letters
        self.on_end = on_end
        self.log = logs.get(program="console")
        self.owner = uuid.uuid4().hex
        self._threads: dict[str, threading.Thread] = {}

    # -- the API's side -------------------------------------------------------------------

    def start(self, queue: str, ids: Sequence[str], user: str, text: str = "",
              rate: float | None = None) -> dict[str, Any]:
        """Records the task and its frozen selection, then runs it in the background."""
        task_id = uuid.uuid4().hex[:12]
        now = time.time()
        fields: dict[str, Any] = {"id": task_id, "kind": "replay", "queue": queue, "state": RUNNING,
                  "moved": 0, "total": len(ids), "started_at": now, "finished_at": "",
                  "user": user, "q": text, "rate": rate or "", "error": ""}
        pipe = self.client.pipeline(transaction=False)
        if ids:
            pipe.hset(key(task_id) + ":ids", mapping=dict.fromkeys(ids, PENDING))
        pipe.hset(key(task_id), mapping=cast("dict[Any, Any]", fields))  # key type: invariant
        pipe.zadd(INDEX, {task_id: now})
        pipe.zremrangebyrank(INDEX, 0, -KEEP_TASKS - 1)
        pipe.execute()
        if self._claim(task_id):
            self._run_in_thread(task_id)
        return self.get(task_id) or fields

    def get(self, task_id: str) -> dict[str, Any] | None:
        fields = self.client.hgetall(key(task_id))
        return _task(fields) if fields else None

    def latest(self) -> list[dict[str, Any]]:
        """The latest KEEP_TASKS tasks, newest first."""
        return [t for t in map(self.get, self._ids()) if t is not None]

    def _ids(self) -> list[str]:
        found: list[Any] = self.client.zrevrange(INDEX, 0, KEEP_TASKS - 1)
        return [_s(i) for i in found]

    def cancel(self, task_id: str) -> dict[str, Any] | None:
        """Asks the runner to stop between batches; what it moved stays moved."""
        task = self.get(task_id)
        if task is not None and task["state"] == RUNNING:
            self.client.hset(key(task_id), "cancel", 1)
        return task

    # -- the runner's side ----------------------------------------------------------------

    def adopt(self) -> list[str]:
        """Resumes every running task whose runner's lease lapsed; returns their ids."""
        adopted = []
        for task_id in self._ids():
            if task_id in self._threads and self._threads[task_id].is_alive():
                continue
            state: Any = self.client.hget(key(task_id), "state")
            if state is not None and _s(state) == RUNNING and self._claim(task_id):
                self.log.info("console.task_resumed", task=task_id)
                self._run_in_thread(task_id)
                adopted.append(task_id)
        return adopted

    def _claim(self, task_id: str) -> bool:
        return bool(self.client.set(key(task_id) + ":runner", self.owner, nx=True,
                                    ex=LEASE_SECONDS))

    def _renew(self, task_id: str) -> bool:
        """Renews the lease; False when another runner holds it (ours lapsed): stop."""
        runner = key(task_id) + ":runner"
        if _s(self.client.get(runner) or b"") != self.owner:
            return False
        self.client.expire(runner, LEASE_SECONDS)
        return True

    def _run_in_thread(self, task_id: str) -> None:
        thread = threading.Thread(target=self.run, args=(task_id,), daemon=True,
                                  name=f"replay-{task_id}")
        self._threads[task_id] = thread
        thread.start()

    def join(self, timeout: float) -> None:
        for thread in list(self._threads.values()):
            thread.join(timeout)

    def run(self, task_id: str) -> None:
        """Moves the selection back, pass after pass, until none is pending, the task is
        cancelled, or what is missing stayed missing for MISSING_PATIENCE_SECONDS."""
        task = self.get(task_id)
        if task is None:
            return
        selection = RedisSelection(self.client, task_id)
        pace = Pacer(task["rate"])
        state, error = COMPLETED, ""
        try:
            letters = self.letters(task["queue"])
            waiting_since: float | None = None
            while selection.pending():
                if self._stopped(task_id):
                    state = CANCELLED
                    break
                result = letters.move_selected(
                    selection, batch=pace.batch, pace=pace,
                    stop=lambda: self._stopped(task_id) or not self._renew(task_id))
                if result.errors:
                    error = "; ".join(result.errors[:3])
                if result.moved or result.stale:
                    waiting_since = None
                    continue
                waiting_since = waiting_since or time.monotonic()
                if time.monotonic() - waiting_since > MISSING_PATIENCE_SECONDS:
                    state, error = FAILED, (f"{selection.pending()} selected message(s) are "
                                            f"no longer in the DLQ " + error).strip()
                    break
                time.sleep(1)  # hidden by a browse or a killed runner: they come back
            else:
                state = CANCELLED if self._cancel_asked(task_id) else COMPLETED
        except Exception as exc:  # the task shows why; the console goes on
            state, error = FAILED, f"{type(exc).__name__}: {exc}"
        if not self._renew(task_id):
            return  # another runner took over: it finishes the task
        self.client.hset(key(task_id), mapping={"state": state, "finished_at": time.time(),
                                                "error": error})
        self.client.delete(key(task_id) + ":runner")
        ended = self.get(task_id)
        if ended is not None:
            self.on_end(ended)

    def _stopped(self, task_id: str) -> bool:
        return self._cancel_asked(task_id)

    def _cancel_asked(self, task_id: str) -> bool:
        return self.client.hget(key(task_id), "cancel") is not None


class Pacer:
    """At most ``rate`` messages a second (SQS's move task's MaxNumberOfMessagesPerSecond):
    batches of at most ``rate`` messages; after each, a wait until the rate allows the next,
    while the runner holds none hidden (a console killed then leaves none to wait out)."""

    def __init__(self, rate: float | None):
        self.rate = float(rate) if rate else None
        self.batch = max(1, min(10, int(self.rate))) if self.rate else 10
        self._started = time.monotonic()
        self._sent = 0

    def __call__(self, n: int) -> None:
        self._sent += n
        if self.rate:
            due = self._started + self._sent / self.rate
            time.sleep(max(0.0, due - time.monotonic()))


def _task(fields: dict) -> dict[str, Any]:
    f = {_s(k): _s(v) for k, v in fields.items()}
    return {"id": f["id"], "kind": f["kind"], "queue": f["queue"], "state": f["state"],
            "moved": int(f.get("moved") or 0), "total": int(f.get("total") or 0),
            "started_at": float(f["started_at"]),
            "finished_at": float(f["finished_at"]) if f.get("finished_at") else None,
            "user": f["user"], "q": f.get("q", ""),
            "rate": float(f["rate"]) if f.get("rate") else None,
            "error": f.get("error") or None}


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
