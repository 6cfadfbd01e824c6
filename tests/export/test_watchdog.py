"""The watchdog that stops ONNX Runtime runs at their deadlines (one thread per process)."""

from __future__ import annotations

import os
import threading
import time

from textclf.model.watchdog import Watchdog


class Options:
    """Stands in for ``onnxruntime.RunOptions``: the watchdog only sets ``terminate``."""

    terminate = False


def test_a_deadline_that_passes_inside_the_block_sets_terminate() -> None:
    dog, options = Watchdog(), Options()
    with dog.stop_at(time.monotonic() + 0.05, options):
        time.sleep(0.3)
        assert options.terminate


def test_a_block_that_ends_in_time_is_never_terminated() -> None:
    dog, options = Watchdog(), Options()
    with dog.stop_at(time.monotonic() + 0.2, options):
        pass
    time.sleep(0.4)
    assert not options.terminate and dog._heap == []


def test_no_deadline_arms_nothing() -> None:
    dog, options = Watchdog(), Options()
    with dog.stop_at(None, options):
        pass
    assert dog._pid == -1 and not options.terminate  # no thread started


def test_an_earlier_deadline_armed_later_wakes_the_thread() -> None:
    """The thread sleeps until the earliest deadline; a new earlier one must cut that sleep short."""
    dog, late, early = Watchdog(), Options(), Options()
    release = threading.Event()

    def hold_late() -> None:
        with dog.stop_at(time.monotonic() + 30, late):
            release.wait(5)

    holder = threading.Thread(target=hold_late)
    holder.start()
    time.sleep(0.05)
    t = time.monotonic()
    with dog.stop_at(time.monotonic() + 0.05, early):
        while not early.terminate and time.monotonic() - t < 5:
            time.sleep(0.01)
    assert early.terminate and time.monotonic() - t < 1.0
    assert not late.terminate
    release.set()
    holder.join(5)
    assert not late.terminate and dog._heap == []


def test_many_calls_leave_nothing_behind() -> None:
    dog = Watchdog()
    for _ in range(1000):
        with dog.stop_at(time.monotonic() + 60, Options()):
            pass
    assert dog._heap == []
    assert sum(t.name == "textclf-watchdog" for t in threading.enumerate()) >= 1


def test_it_works_in_a_forked_child() -> None:
    """gunicorn forks its workers after importing the app module: a thread started in the master is
    not in the child, so the child starts its own on first use."""
    dog = Watchdog()
    with dog.stop_at(time.monotonic() + 60, Options()):
        pass
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if its deadline fired
        options = Options()
        with dog.stop_at(time.monotonic() + 0.05, options):
            deadline = time.monotonic() + 5
            while not options.terminate and time.monotonic() < deadline:
                time.sleep(0.01)
        os.write(write, b"1" if options.terminate else b"0")
        os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    assert answer == b"1"


def test_arming_a_later_deadline_does_not_wake_the_thread() -> None:
    """One request after another, each with a deadline a minute away (the serving default): the thread
    sleeps through them all instead of waking once per request."""
    dog = Watchdog()
    for _ in range(200):
        options = Options()
        with dog.stop_at(time.monotonic() + 60, options):
            pass
        assert not options.terminate
    time.sleep(0.05)
    assert dog.wakeups <= 2, f"the thread woke {dog.wakeups} times for 200 armings"
    assert dog._heap == []


def test_a_deadline_armed_while_the_thread_idles_still_fires() -> None:
    """With nothing armed the thread wakes by itself now and then; a deadline armed in between (later
    than that wake-up, so without waking it) must still fire on time."""
    dog, first, second = Watchdog(), Options(), Options()
    with dog.stop_at(time.monotonic() + 0.05, first):  # starts the thread, which wakes at that deadline,
        pass
    time.sleep(0.2)  # finds nothing armed, and sleeps IDLE_WAKE_S (1 s)
    t = time.monotonic()
    with dog.stop_at(t + 1.5, second):
        while not second.terminate and time.monotonic() - t < 5:
            time.sleep(0.01)
    assert second.terminate and 1.4 <= time.monotonic() - t < 2.5
