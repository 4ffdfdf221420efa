"""The job runner: tasks in order on a thread, progress, cancel mid-task, partial results, errors per task.

No timing assertions: every wait is on an event the test controls, with a generous timeout that only
guards against a hang.
"""

from __future__ import annotations

import threading

import pytest

from explorer.jobs import CANCELLED, DONE, FAILED, PENDING, RUNNING, Cancelled, Job, Task, describe_error
from explorer.spec import ExplorerError

HANG = 30  # seconds: only a guard against a hang, never a measured time


def _value(v):
    def run(report):
        report(0.5)
        return v
    return run


def test_tasks_run_in_order_and_report_progress():
    seen: list[float] = []
    inside = threading.Event()
    release = threading.Event()

    def slow(report):
        for i in range(1, 5):
            report(i / 4)
            seen.append(i / 4)
            if i == 2:
                inside.set()
                assert release.wait(HANG)
        return "slow"

    job = Job([Task("a", _value("a"), key=0), Task("b", slow, key=1), Task("c", _value("c"), key=2)]).start()
    assert inside.wait(HANG)
    states = job.snapshot()
    assert [s.status for s in states] == [DONE, RUNNING, PENDING]
    assert states[1].progress == 0.5 and states[0].progress == 1.0
    assert job.running and not job.finished
    assert job.results() == ["a"]  # the finished map is there before the job ends
    assert job.progress() == pytest.approx((1 + 0.5) / 3)
    assert job.progress([0, 1, 1]) == pytest.approx(0.5 / 2)
    release.set()
    assert job.wait(HANG)
    assert [s.status for s in job.snapshot()] == [DONE, DONE, DONE]
    assert job.results() == ["a", "slow", "c"] and seen == [0.25, 0.5, 0.75, 1.0]
    assert [s.key for s in job.snapshot()] == [0, 1, 2]
    assert job.progress() == 1.0 and not job.running
    assert job.counts() == {PENDING: 0, RUNNING: 0, DONE: 3, FAILED: 0, CANCELLED: 0}


def test_cancel_stops_the_running_task_at_its_next_report_and_keeps_what_finished():
    reports_after_cancel: list[float] = []
    inside = threading.Event()
    cancelled = threading.Event()
    started_third = threading.Event()

    def long(report):
        report(0.1)
        inside.set()
        assert cancelled.wait(HANG)
        for i in range(2, 100):  # a loop of forward passes: the first report after the cancel raises
            report(i / 100)
            reports_after_cancel.append(i / 100)
        return "never"

    def third(report):
        started_third.set()
        return "never either"

    job = Job([Task("first", _value(1)), Task("long", long), Task("third", third)]).start()
    assert inside.wait(HANG)
    job.cancel()
    cancelled.set()
    assert job.wait(HANG)
    states = job.snapshot()
    assert [s.status for s in states] == [DONE, CANCELLED, CANCELLED]
    assert reports_after_cancel == []  # stopped mid-task, at the first report
    assert states[1].progress == pytest.approx(0.1)
    assert not started_third.is_set()
    assert job.results() == [1]  # partial results kept
    assert job.cancel_requested and job.finished


def test_an_error_in_one_task_is_reported_and_the_others_still_run():
    def bad(report):
        report(0.3)
        raise ExplorerError("target class 12 is out of range")

    def crash(report):
        raise ZeroDivisionError("division by zero")

    job = Job([Task("bad", bad), Task("ok", _value("ok")), Task("crash", crash), Task("last", _value(9))])
    job.run_here()
    states = job.snapshot()
    assert [s.status for s in states] == [FAILED, DONE, FAILED, DONE]
    assert states[0].error == "target class 12 is out of range"  # a project error: its own words
    assert states[2].error == "ZeroDivisionError: division by zero"
    assert job.results() == ["ok", 9]


def test_a_library_that_wraps_the_cancel_still_counts_as_cancelled():
    inside = threading.Event()
    go = threading.Event()

    def wrapped(report):
        inside.set()
        assert go.wait(HANG)
        try:
            report(0.5)
        except Cancelled as exc:
            raise RuntimeError("the library's own error") from exc
        return "no"

    job = Job([Task("wrapped", wrapped)]).start()
    assert inside.wait(HANG)
    job.cancel()
    go.set()
    assert job.wait(HANG)
    assert job.snapshot()[0].status == CANCELLED and job.snapshot()[0].error is None


def test_cancel_before_start_and_start_twice():
    job = Job([Task("a", _value(1))])
    job.cancel()
    assert job.finished and [s.status for s in job.snapshot()] == [CANCELLED]
    twice = Job([Task("a", _value(1))]).start()
    assert twice.start() is twice
    assert twice.wait(HANG) and twice.results() == [1]
    with pytest.raises(RuntimeError, match="already started"):
        twice.run_here()


def test_a_real_explanation_is_cancelled_through_its_progress_callback():
    """The cancel reaches Captum's loop: IntegratedGradients stops after the forward pass that reported."""
    import torch

    from explorer.explain import explain_tensor
    from explorer.infer import load_model
    from explorer.lab import DIGITS_CHECKPOINT

    digits = load_model(None, DIGITS_CHECKPOINT, cache=False)
    x = torch.zeros(3, 32, 32)
    x[:, 8:24, 14:18] = 1.0
    passes: list[float] = []
    job_box: list[Job] = []

    def run(report):
        def progress(fraction):
            passes.append(fraction)
            if len(passes) == 3:  # cancel from inside, at a known point of the run
                job_box[0].cancel()
            report(fraction)
        return explain_tensor(digits.model, x, "ig", steps=64, internal_batch_size=2, progress=progress)

    job = Job([Task("saliency", lambda report: explain_tensor(digits.model, x, "saliency", progress=report)),
               Task("ig", run)])
    job_box.append(job)
    job.run_here()
    states = job.snapshot()
    assert [s.status for s in states] == [DONE, CANCELLED]
    assert len(passes) == 3  # 0.0, then two forward passes; the third report raised and nothing ran after it
    assert states[0].result.method == "saliency"


def test_a_job_nobody_watches_any_more_cancels_itself():
    watched = [True]

    def first(report):
        report(0.5)
        watched[0] = False  # e.g. the browser tab is closed while this task runs
        return "kept"

    def second(report):
        report(0.1)
        return "never"

    job = Job([Task("first", first), Task("second", second)], alive=lambda: watched[0])
    job.run_here()
    assert [s.status for s in job.snapshot()] == [DONE, CANCELLED]
    assert job.abandoned and job.cancel_requested and job.results() == ["kept"]


def test_describe_error():
    assert describe_error(ValueError("bad\nsecond line")) == "ValueError: bad"
    assert describe_error(ExplorerError("one line")) == "one line"
    assert describe_error(KeyError()) == "KeyError"


# -- the line for heavy work -------------------------------------------------------------------------


@pytest.fixture
def one_place(monkeypatch):
    """One heavy job at a time; the line is empty before and after the test, and trims are counted."""
    from explorer import resources
    from explorer.jobs import heavy_line

    monkeypatch.setenv("EXPLORER_HEAVY_JOBS", "1")
    trims: list[int] = []
    monkeypatch.setattr(resources, "release_memory", lambda: trims.append(1) or True)
    assert heavy_line().counts() == (0, 0)
    yield trims
    assert heavy_line().counts() == (0, 0)  # nothing left holding or waiting


def _gate(log: list, name: str):
    """A task that says it started, then waits for the test to open its gate."""
    inside, gate = threading.Event(), threading.Event()

    def run(report):
        log.append(name)
        inside.set()
        assert gate.wait(HANG)
        report(1.0)
        return name
    return run, inside, gate


def test_heavy_jobs_wait_in_line_first_come_first_served(one_place):
    log: list[str] = []
    run_a, inside_a, gate_a = _gate(log, "a")
    a = Job([Task("a", run_a)], heavy=True).start()
    assert inside_a.wait(HANG)

    def logged(name):
        return lambda report: log.append(name) or name

    b = Job([Task("b", logged("b")), Task("b2", logged("b2"))], heavy=True).start()
    c = Job([Task("c", logged("c"))], heavy=True).start()
    light = Job([Task("light", logged("light"))]).start()  # not heavy: it does not wait
    assert light.wait(HANG) and light.results() == ["light"]
    assert (a.position, b.position, c.position, light.position) == (None, 1, 2, None)
    assert [s.status for s in b.snapshot()] == [PENDING, PENDING] and not b.finished
    gate_a.set()
    assert a.wait(HANG) and b.wait(HANG) and c.wait(HANG)
    assert log == ["a", "light", "b", "b2", "c"]  # b's whole job, then c: in the order they were started
    assert (b.position, c.position) == (None, None)
    assert one_place == [1]  # memory given back once, when the last heavy job ended, not between them


def test_a_job_cancelled_while_waiting_leaves_the_line_at_once(one_place):
    from explorer.jobs import heavy_line

    log: list[str] = []
    run_a, inside_a, gate_a = _gate(log, "a")
    a = Job([Task("a", run_a)], heavy=True).start()
    assert inside_a.wait(HANG)
    ran: list[str] = []
    b = Job([Task("b", lambda report: ran.append("b"))], heavy=True).start()
    c = Job([Task("c", lambda report: ran.append("c"))], heavy=True).start()
    assert (b.position, c.position) == (1, 2)
    b.cancel()
    assert (b.position, c.position) == (None, 1)  # out of the line now, not at its next poll
    assert b.wait(HANG)  # finished while a still holds the place
    assert not a.finished and heavy_line().counts() == (1, 1)
    assert [s.status for s in b.snapshot()] == [CANCELLED]
    gate_a.set()
    assert a.wait(HANG) and c.wait(HANG)
    assert ran == ["c"]


def test_the_place_is_freed_when_a_heavy_job_fails(one_place):
    from explorer.jobs import heavy_line

    def crash(report):
        raise MemoryError("out of memory")

    bad = Job([Task("crash", crash)], heavy=True).start()
    assert bad.wait(HANG)
    assert bad.snapshot()[0].status == FAILED and bad.snapshot()[0].error == "MemoryError: out of memory"
    assert heavy_line().counts() == (0, 0) and one_place == [1]
    after = Job([Task("next", _value(2))], heavy=True).start()
    assert after.wait(HANG) and after.results() == [2]


def test_the_number_of_places_is_the_heavy_jobs_limit(one_place, monkeypatch):
    monkeypatch.setenv("EXPLORER_HEAVY_JOBS", "2")
    log: list[str] = []
    run_a, inside_a, gate_a = _gate(log, "a")
    run_b, inside_b, gate_b = _gate(log, "b")
    a = Job([Task("a", run_a)], heavy=True).start()
    b = Job([Task("b", run_b)], heavy=True).start()
    assert inside_a.wait(HANG) and inside_b.wait(HANG)  # both run at once
    c = Job([Task("c", _value("c"))], heavy=True).start()
    assert c.position == 1  # the third waits
    gate_a.set()
    assert c.wait(HANG) and c.results() == ["c"]
    assert not b.finished
    gate_b.set()
    assert a.wait(HANG) and b.wait(HANG)
    assert one_place == [1]


def test_an_unreadable_limit_fails_the_job_in_one_line(one_place, monkeypatch):
    monkeypatch.setenv("EXPLORER_HEAVY_JOBS", "lots")
    job = Job([Task("a", _value(1)), Task("b", _value(2))], heavy=True).start()
    assert job.wait(HANG)
    states = job.snapshot()
    assert [s.status for s in states] == [FAILED, FAILED]
    assert "EXPLORER_HEAVY_JOBS" in states[0].error and "\n" not in states[0].error


def test_heavy_slot_waits_reports_its_place_and_can_be_cancelled(one_place):
    from explorer.jobs import heavy_line, heavy_slot, wait_message

    log: list[str] = []
    run_a, inside_a, gate_a = _gate(log, "a")
    a = Job([Task("a", run_a)], heavy=True).start()
    assert inside_a.wait(HANG)
    seen: list[int] = []
    with pytest.raises(Cancelled):
        with heavy_slot(cancelled=lambda: bool(seen), on_wait=seen.append):
            raise AssertionError("ran without a place")
    assert seen == [1] and heavy_line().counts() == (1, 0)  # told its place once, then left the line
    assert wait_message(2) == "Waiting for a free place: 2nd in line (1 heavy job at a time on this server)"
    gate_a.set()
    assert a.wait(HANG)
    # with the place free it runs at once, and frees the place also when the work fails
    with pytest.raises(ZeroDivisionError):
        with heavy_slot(on_wait=seen.append):
            assert heavy_line().counts() == (1, 0)
            1 / 0
    assert heavy_line().counts() == (0, 0) and seen == [1] and one_place == [1, 1]


def test_ordinals():
    from explorer.jobs import ordinal

    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]


def test_a_finished_job_keeps_its_results_not_its_work():
    """A page keeps its last job for the results; the network a task's closure held must not stay with it."""
    import gc
    import weakref

    class Network:
        pass

    network = Network()
    gone = weakref.ref(network)

    def uses(net):
        return lambda report: "map" if net is not None else "no network"

    job = Job([Task("map", uses(network))]).start()
    del network
    assert job.wait(HANG) and job.results() == ["map"]
    gc.collect()
    assert gone() is None
