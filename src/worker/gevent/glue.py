"""The gevent side of ferrocorn's gevent worker (-k gevent).

The worker's Rust io thread does all socket I/O and HTTP parsing. It hands
complete requests to the ``bridge`` (written in Rust) and writes the bridge's
eventfd. This module runs on the worker's main thread, where gevent patched
the standard library and the app was imported: it watches that eventfd with a
gevent io watcher and runs each request in a greenlet of its own, at most
``size`` at a time (--worker-connections); the rest wait in the bridge's
queue. A greenlet whose client reads slowly waits in ``wait`` until the io
thread says there is room; the key it waits under comes back through the
same eventfd. Everything per request (pre_request, the app call, the body,
the access log, post_request) is done by ``bridge.answer``.
"""
from gevent import getcurrent
from gevent.event import Event
from gevent.hub import Waiter, get_hub
from gevent.pool import Group

# Seconds between the hub's heartbeats: a hub that app code blocks for
# --timeout seconds gets the worker replaced.
HEARTBEAT_EVERY = 0.25

# Greenlets waiting for room to write, by the key the bridge gave them.
_waiters = {}


def wait(key):
    """Yield to the hub until the io thread wakes ``key``."""
    waiter = Waiter()
    _waiters[key] = waiter
    try:
        waiter.get()
    finally:
        _waiters.pop(key, None)


class Hub:
    """The requests' greenlets, fed from the bridge."""

    def __init__(self, bridge, size):
        self.bridge = bridge
        self.size = size
        self.group = Group()
        self.stop_asked = Event()
        self.grace = None
        loop = get_hub().loop
        # Level-triggered: a wake posted before the loop runs is seen.
        self.watcher = loop.io(bridge.fd, 1)
        self.heartbeat = loop.timer(0.0, HEARTBEAT_EVERY)
        self.watcher.start(self.on_wake)
        self.heartbeat.start(bridge.beat)

    def on_wake(self):
        """In the hub: resume the greenlets that may write again, start
        greenlets for new requests, note a stop."""
        woken, stop = self.bridge.take()
        for key in woken:
            waiter = _waiters.pop(key, None)
            if waiter is not None:
                waiter.switch(None)
        if stop is not None and self.grace is None:
            self.grace = stop
            self.stop_asked.set()
        self.fill()

    def fill(self):
        free = self.size - len(self.group)
        if free > 0:
            for job in self.bridge.take_jobs(free):
                self.group.spawn(self.serve, job)

    def serve(self, job):
        try:
            self.bridge.answer(job)
        finally:
            # This greenlet's place goes to the next queued request.
            self.group.discard(getcurrent())
            if self.grace is None:
                self.fill()

    def run(self):
        """Serve until the io thread asks to stop, then give the requests
        still running the time it allows (the rest are left behind: the
        process is about to exit)."""
        try:
            self.stop_asked.wait()
            self.group.join(timeout=self.grace)
        finally:
            self.watcher.stop()
            self.heartbeat.stop()
            self.watcher.close()
            self.heartbeat.close()

