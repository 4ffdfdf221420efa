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
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

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


def describe_error(exc: BaseException) -> str:
    """One line for people: a project error's own text, else the exception's type and first line."""
    text = (str(exc).strip().splitlines() or [""])[0]
    if isinstance(exc, ExplorerError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Job:
    """Run ``tasks`` in order on a daemon thread (started by :meth:`start`), cancellable between and
    inside tasks. Thread-safe: the worker writes the states under a lock, readers take snapshots."""

    def __init__(self, tasks: Sequence[Task], *, name: str = "job", alive: Callable[[], bool] | None = None) -> None:
        """``alive``: asked at every progress report and between tasks; once it answers False the job
        cancels itself (nobody is left to see the result, e.g. the browser tab was closed)."""
        self.name = name
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
        self._work()
        return self

    def cancel(self) -> None:
        """Ask the job to stop: the running task stops at its next progress report, no other task starts."""
        self._cancel.set()
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
            for task, state in zip(self._tasks, self._states):
                if self._cancel.is_set() or self._abandoned():
                    with self._lock:
                        state.status = CANCELLED
                    continue
                self._run_one(task, state)
        finally:
            self.finished_at = time.monotonic()
            self._finished.set()

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
