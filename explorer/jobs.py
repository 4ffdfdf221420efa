"""Long work off the caller's thread: a list of tasks run one after another, with progress and cancel.

A :class:`Job` runs its :class:`Task` s in order on one background thread.
Each task is a function taking a progress callback ``report(fraction)``; the
callback raises :class:`Cancelled` once :meth:`Job.cancel` was called, so a
task that reports progress (Captum's forward passes do, see
:mod:`explorer.explain.progress`) stops at its next report. What finished is
kept, a task's error is kept with that task and the next task runs, and
:meth:`Job.snapshot` gives a consistent copy of every task's state for a
page (or a CLI) to draw. No Streamlit here: the app polls a job from a
fragment, and a test drives one directly.

Heavy work (explanations, scorecards, profiles, training) waits in one
first-come first-served line per process, :func:`heavy_line`, with the limit
``heavy_jobs`` places: a ``Job(..., heavy=True)`` takes a place before its
first task and frees it when it ends, and :func:`heavy_slot` does the same
for work run on the calling thread. A job waiting there can be cancelled (it
leaves the line at once) and says its place (:attr:`Job.position`). When the
last place is freed, the memory the allocator kept is given back to the OS
(:func:`explorer.resources.release_memory`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from explorer import resources
from explorer.errors import ExplorerError, UsageError

Report = Callable[[float], None]

PENDING, RUNNING, DONE, FAILED, CANCELLED = "waiting", "running", "done", "failed", "cancelled"
FINAL = (DONE, FAILED, CANCELLED)


class Cancelled(Exception):  # noqa: N818 - a signal, not an error
    """Raised inside a task (by its progress callback) once its job was cancelled."""


@dataclass(frozen=True)
class Task:
    """One unit of work: ``run(report)`` returns the result; ``label`` is what people read."""

    label: str
    run: Callable[[Report], Any]
    key: Any = None  # the caller's handle (e.g. which cell of a grid the result belongs to)


@dataclass
class TaskState:
    """Where one task stands: ``status`` (waiting, running, done, failed, cancelled), ``progress`` in
    [0, 1], the result when done, the one-line error when failed, and the seconds it ran."""

    label: str
    key: Any = None
    status: str = PENDING
    progress: float = 0.0
    result: Any = None
    error: str | None = None
    seconds: float = 0.0
    started: float | None = field(default=None, repr=False)


WAIT_POLL_S = 0.2  # how often work waiting in the line checks for a cancel (and reports its place)


class HeavyLine:
    """The line for heavy work: ``limit("heavy_jobs")`` places (read at every move of the line), the rest
    wait first come, first served. Holders and waiters are tickets: any object, used once. Thread-safe."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: list[object] = []  # first in line first
        self._holding: set[object] = set()
        self._places = 1  # the last value read (kept when the limit cannot be read any more)

    def places(self) -> int:
        """How many heavy jobs may run at once now (the limit ``heavy_jobs``; raises its ConfigError)."""
        self._places = max(1, int(resources.limit("heavy_jobs")))
        return self._places

    def _places_now(self) -> int:
        try:
            return self.places()
        except ExplorerError:
            return self._places

    def _admit(self) -> None:  # under the lock; wakes the waiters when someone got a place
        places, admitted = self._places_now(), False
        while self._waiting and len(self._holding) < places:
            self._holding.add(self._waiting.pop(0))
            admitted = True
        if admitted:
            self._cond.notify_all()

    def join(self, ticket: object) -> None:
        """Get in line (a free place is taken at once). Raises the limit's ConfigError before joining."""
        self.places()
        with self._cond:
            if ticket in self._waiting or ticket in self._holding:
                raise RuntimeError("this ticket is already in the line")
            self._waiting.append(ticket)
            self._admit()

    def wait(self, ticket: object, timeout: float | None = None) -> bool:
        """Block until ``ticket`` holds a place or has left the line, or ``timeout`` seconds; True when it
        holds a place."""
        with self._cond:
            self._admit()  # the limit may have been raised meanwhile
            self._cond.wait_for(lambda: ticket not in self._waiting, timeout)
            return ticket in self._holding

    def position(self, ticket: object) -> int | None:
        """``ticket``'s place in line, 1 for the next to run; None when not waiting."""
        with self._cond:
            return self._waiting.index(ticket) + 1 if ticket in self._waiting else None

    def holds(self, ticket: object) -> bool:
        """Whether ``ticket`` holds a place (its work may run)."""
        with self._cond:
            return ticket in self._holding

    def withdraw(self, ticket: object) -> None:
        """Leave the line if still waiting (a place already held is kept until :meth:`leave`)."""
        with self._cond:
            if ticket in self._waiting:
                self._waiting.remove(ticket)
                self._admit()
                self._cond.notify_all()  # its own waiter: it is out of the line

    def leave(self, ticket: object) -> None:
        """Free ``ticket``'s place (or leave the line); the next in line gets it. When no heavy work runs
        any more, the memory the allocator kept goes back to the OS."""
        with self._cond:
            held = ticket in self._holding
            self._holding.discard(ticket)
            if ticket in self._waiting:
                self._waiting.remove(ticket)
            self._admit()
            self._cond.notify_all()
            idle = held and not self._holding
        if idle:
            resources.release_memory()

    def counts(self) -> tuple[int, int]:
        """(running, waiting): how many hold a place, how many wait for one."""
        with self._cond:
            return len(self._holding), len(self._waiting)


_LINE = HeavyLine()


def heavy_line() -> HeavyLine:
    """The process's line for heavy work (every session of the app shares it)."""
    return _LINE


@contextlib.contextmanager
def heavy_slot(*, cancelled: Callable[[], bool] = lambda: False,
               on_wait: Callable[[int], None] | None = None) -> Iterator[None]:
    """Hold a place in the line for heavy work run on the calling thread (the Lab's training).

    Waits for a free place first: ``on_wait(position)`` is called while waiting (about every
    :data:`WAIT_POLL_S`; 1 is the next to run), and :class:`Cancelled` is raised once ``cancelled()`` is
    true (the line is left at once). The place is freed when the block ends, also on an error.
    """
    line, ticket = heavy_line(), object()
    line.join(ticket)
    try:
        said = None
        while not line.holds(ticket):
            if cancelled():
                raise Cancelled("cancelled while waiting for a free place")
            now = time.monotonic()
            if on_wait is not None and (said is None or now - said >= WAIT_POLL_S):
                position = line.position(ticket)
                if position is not None:
                    on_wait(position)
                said = now
            line.wait(ticket, WAIT_POLL_S)
        yield
    finally:
        line.leave(ticket)


def ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th``, ``11th``, ``21st``."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def wait_message(position: int) -> str:
    """What a person reads while their work waits in the line:
    ``Waiting for a free place: 2nd in line (1 heavy job at a time on this server)``."""
    places = heavy_line()._places_now()
    return (f"Waiting for a free place: {ordinal(position)} in line ({places} heavy job{'s' * (places > 1)} "
            f"at a time on this server)")


def describe_error(exc: BaseException) -> str:
    """One line for people: a project error's own text, else the exception's type and first line."""
    text = (str(exc).strip().splitlines() or [""])[0]
    if isinstance(exc, ExplorerError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Job:
    """Run ``tasks`` in order on a daemon thread (started by :meth:`start`), cancellable between and
    inside tasks. Thread-safe: the worker writes the states under a lock, readers take snapshots."""

    def __init__(self, tasks: Sequence[Task], *, name: str = "job", alive: Callable[[], bool] | None = None,
                 heavy: bool = False) -> None:
        """``alive``: asked at every progress report and between tasks; once it answers False the job
        cancels itself (nobody is left to see the result, e.g. the browser tab was closed).
        ``heavy``: wait in the line for heavy work (:func:`heavy_line`) before the first task; the place
        is freed when the job ends, however it ends."""
        self.name = name
        self.heavy = heavy
        self._alive = alive
        self.abandoned = False
        self._tasks = list(tasks)
        self._states = [TaskState(t.label, t.key) for t in self._tasks]
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None

    # -- control ---------------------------------------------------------------------------------
    def start(self) -> Job:
        """Start the worker thread (once); returns the job."""
        with self._lock:
            if self._thread is not None:
                return self
            self.started_at = time.monotonic()
            self._get_in_line()  # now, on the caller's thread: the line's order is the order of the starts
            self._thread = threading.Thread(target=self._work, name=f"explorer-{self.name}", daemon=True)
            self._thread.start()
        return self

    def run_here(self) -> Job:
        """Run every task on the calling thread (scripts and tests that want no thread)."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("this job was already started")
            self._thread = threading.current_thread()
            self.started_at = time.monotonic()
            self._get_in_line()
        self._work()
        return self

    def cancel(self) -> None:
        """Ask the job to stop: the running task stops at its next progress report, no other task starts;
        a job waiting in the line for heavy work leaves it at once."""
        self._cancel.set()
        if self.heavy:
            heavy_line().withdraw(self)
        if self._thread is None:  # never started: nothing will run, so it is finished now
            with self._lock:
                for state in self._states:
                    state.status = CANCELLED
            self.finished_at = time.monotonic()
            self._finished.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished (or ``timeout`` seconds); True when it has."""
        return self._finished.wait(timeout)

    # -- reading ---------------------------------------------------------------------------------
    @property
    def cancel_requested(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancel.is_set()

    @property
    def finished(self) -> bool:
        """Whether no task runs or will run any more (all done, failed or cancelled)."""
        return self._finished.is_set()

    @property
    def running(self) -> bool:
        """Started and not finished."""
        return self._thread is not None and not self.finished

    @property
    def position(self) -> int | None:
        """While the job waits in the line for heavy work, its place (1: the next to run); else None."""
        return heavy_line().position(self) if self.heavy else None

    def snapshot(self) -> list[TaskState]:
        """A copy of every task's state, in task order (safe to read while the job runs)."""
        with self._lock:
            now = time.monotonic()
            out = []
            for state in self._states:
                copy = replace(state)
                if state.status == RUNNING and state.started is not None:
                    copy.seconds = now - state.started
                out.append(copy)
            return out

    def results(self) -> list[Any]:
        """The results of the finished tasks, in task order (partial while running or after a cancel)."""
        return [s.result for s in self.snapshot() if s.status == DONE]

    def progress(self, weights: Sequence[float] | None = None) -> float:
        """Overall fraction done in [0, 1]; ``weights`` (e.g. estimated seconds per task) weigh the tasks."""
        states = self.snapshot()
        w = list(weights) if weights is not None else [1.0] * len(states)
        if len(w) != len(states):
            raise UsageError("weights", f"{len(w)} weights for {len(states)} tasks: give one per task")
        total = sum(max(0.0, x) for x in w)
        if not states or total <= 0:
            return 1.0 if self.finished else 0.0
        done = sum(max(0.0, x) * (1.0 if s.status in FINAL else s.progress) for s, x in zip(states, w))
        return min(1.0, done / total)

    @property
    def elapsed(self) -> float:
        """Seconds since the start (to the end when finished); 0 before the start."""
        if self.started_at is None:
            return 0.0
        end = self.finished_at if self.finished_at is not None else time.monotonic()
        return end - self.started_at

    def counts(self) -> dict[str, int]:
        """How many tasks are in each status."""
        out = {s: 0 for s in (PENDING, RUNNING, DONE, FAILED, CANCELLED)}
        for state in self.snapshot():
            out[state.status] += 1
        return out

    # -- the worker ------------------------------------------------------------------------------
    def _work(self) -> None:
        try:
            if not self.heavy or self._queue():
                self._run_all()
            else:  # cancelled or abandoned while waiting, or refused: no task runs
                with self._lock:
                    for state in self._states:
                        state.status = FAILED if state.status == FAILED else CANCELLED
        finally:
            self._tasks = []  # the work (and the networks its closures hold) goes; the results stay
            if self.heavy:
                heavy_line().leave(self)
            self.finished_at = time.monotonic()
            self._finished.set()

    def _get_in_line(self) -> None:
        if not self.heavy:
            return
        try:
            heavy_line().join(self)
        except ExplorerError as exc:  # the limit cannot be read: every task fails, saying why
            for state in self._states:
                state.status, state.error = FAILED, describe_error(exc)

    def _queue(self) -> bool:
        """Wait in the line for heavy work; True once this job holds a place, False when it was cancelled
        or abandoned while waiting, or could not get in line."""
        line = heavy_line()
        if any(state.status == FAILED for state in self._states):
            return False
        while not line.wait(self, WAIT_POLL_S):
            if self._cancel.is_set() or self._abandoned():  # a cancel also took it out of the line
                return False
        return True

    def _run_all(self) -> None:
        for task, state in zip(self._tasks, self._states):
            if self._cancel.is_set() or self._abandoned():
                with self._lock:
                    state.status = CANCELLED
                continue
            self._run_one(task, state)

    def _abandoned(self) -> bool:
        if self._alive is None or self._alive():
            return False
        self.abandoned = True
        self._cancel.set()
        return True

    def _run_one(self, task: Task, state: TaskState) -> None:
        def report(fraction: float) -> None:
            if self._cancel.is_set() or self._abandoned():
                raise Cancelled(f"{task.label}: cancelled")
            with self._lock:
                state.progress = max(state.progress, min(1.0, max(0.0, float(fraction))))

        with self._lock:
            state.status, state.started = RUNNING, time.monotonic()
        try:
            result = task.run(report)
        except Cancelled:
            status, result, error = CANCELLED, None, None
        except Exception as exc:  # noqa: BLE001 - one task's failure is that task's result, the job goes on
            if self._cancel.is_set() and _caused_by_cancel(exc):
                status, result, error = CANCELLED, None, None
            else:
                status, result, error = FAILED, None, describe_error(exc)
        else:
            status, error = DONE, None
        with self._lock:
            state.status, state.result, state.error = status, result, error
            state.seconds = time.monotonic() - (state.started or time.monotonic())
            if status == DONE:
                state.progress = 1.0


def _caused_by_cancel(exc: BaseException | None) -> bool:
    """Whether a library wrapped our :class:`Cancelled` in its own exception (its cause or context)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, Cancelled):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False
