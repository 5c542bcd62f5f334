"""`worker.SenderThreads`: an idle pool asks about once per poll in all, not once per
thread; one that finds something wakes the rest; threads stuck in a send do not stop the
others from asking."""

from __future__ import annotations

import threading
import time

from kassa.worker import SenderThreads

POLL_S = 0.05


class Queue:
    def __init__(self, items: int = 0) -> None:
        self.items = items
        self.asked = 0
        self.sent: list[str] = []
        self.lock = threading.Lock()
        self.hang = threading.Event()
        self.hanging: set[str] = set()

    def send_one(self, owner: str) -> bool:
        with self.lock:
            self.asked += 1
            if self.items == 0:
                return False
            self.items -= 1
            self.sent.append(owner)
            stuck = len(self.hanging) < 2 and self.items >= 100  # the first two hang
            if stuck:
                self.hanging.add(owner)
        if stuck:
            self.hang.wait(30)
        time.sleep(0.01)  # a send takes a while: the others must take part
        return True


def run(queue: Queue, threads: int, seconds: float) -> None:
    pool = SenderThreads(queue.send_one, threads, label="test", poll_s=POLL_S)
    pool.start()
    try:
        time.sleep(seconds)
    finally:
        queue.hang.set()
        pool.stop()
        assert pool.join(timeout=10)


def test_an_idle_pool_asks_about_once_per_poll_not_once_per_thread_per_poll() -> None:
    queue = Queue()
    run(queue, threads=8, seconds=2.0)
    per_thread_polling = 8 * 2.0 / POLL_S  # 320: what eight threads asking on their own send
    assert 8 <= queue.asked <= per_thread_polling / 4, queue.asked


def test_what_one_thread_finds_wakes_the_others_and_all_of_it_goes_out() -> None:
    queue = Queue(items=50)
    run(queue, threads=4, seconds=1.0)
    assert len(queue.sent) == 50 and queue.items == 0
    assert len(set(queue.sent)) > 1  # more than one thread took part


def test_threads_stuck_in_a_send_leave_the_others_asking() -> None:
    queue = Queue(items=102)  # the first two sends hang until the end
    pool = SenderThreads(queue.send_one, 4, label="test", poll_s=POLL_S)
    pool.start()
    try:
        deadline = time.monotonic() + 5
        while queue.items and time.monotonic() < deadline:
            time.sleep(0.01)
        assert queue.items == 0 and len(queue.hanging) == 2
        before = queue.asked
        time.sleep(1.0)  # idle now, two threads still stuck: the other two keep asking
        assert queue.asked - before >= 3
    finally:
        queue.hang.set()
        pool.stop()
        assert pool.join(timeout=10)
