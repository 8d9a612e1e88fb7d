"""The asyncio side of ferrocorn's ASGI worker.

The worker's Rust loop thread does all socket I/O and HTTP parsing. It hands
complete requests to a ``hub`` (written in Rust) and writes the hub's
eventfd; this module runs the asyncio (or uvloop) event loop on its own
thread, watches that eventfd with ``loop.add_reader``, and runs one task per
request. Everything per message (the scope, ``http.request`` events,
validating and posting the response) is done by the Rust ``cycle`` objects;
this module only holds the futures that asyncio code awaits and the lifespan
protocol.
"""
import asyncio
import sys
import traceback

ASGI = {"version": "3.0", "spec_version": "2.4"}
LIFESPAN_ASGI = {"version": "3.0", "spec_version": "2.0"}

# Note kinds the hub hands back: NOTE_ROOM, NOTE_HANGUP and NOTE_INBOUND are set on this
# module by the extension when it loads it (they are defined in
# inbox.rs, once).
# Seconds between the loop's heartbeats (see _heartbeat).
HEARTBEAT_EVERY = 0.25


def new_loop(kind):
    """An event loop of the asked kind: uvloop for "uvloop", and for "auto"
    when it is importable; asyncio's default loop otherwise."""
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            return uvloop.new_event_loop(), "uvloop"
    return asyncio.new_event_loop(), "asyncio"


def run(hub, app, loop_kind, lifespan_mode, grace):
    """Run the loop on this thread until the hub asks to stop. Reports the
    outcome of the lifespan startup with ``hub.started(error or None)``."""
    try:
        loop, name = new_loop(loop_kind)
    except BaseException:
        hub.started("cannot create the %s event loop:\n%s" % (loop_kind, _format_exc()))
        return
    asyncio.set_event_loop(loop)
    server = Server(hub, app, loop, lifespan_mode, grace)
    try:
        error = loop.run_until_complete(server.lifespan.startup())
        if error is not None:
            hub.started(error)
            loop.run_until_complete(server.lifespan.abandon())
            return
        hub.log_info("ASGI app running on the %s event loop" % name)
        loop.add_reader(hub.fd, server.on_wake)
        _heartbeat(loop, hub)
        hub.started(None)
        # A stop asked for before the reader was added must not be missed.
        server.on_wake()
        loop.run_forever()
    finally:
        try:
            loop.remove_reader(hub.fd)
            loop.run_until_complete(loop.shutdown_asyncgens())
        except BaseException:
            pass
        asyncio.set_event_loop(None)
        loop.close()


def _heartbeat(loop, hub):
    """Tell the worker the loop is alive, four times a second; a loop the
    app blocks for ``--timeout`` seconds gets the worker replaced."""
    hub.beat()
    loop.call_later(HEARTBEAT_EVERY, _heartbeat, loop, hub)


def _format_exc():
    return "".join(traceback.format_exception(*sys.exc_info())).rstrip()


class Exchange:
    """One request in flight: the ``receive`` and ``send`` callables the
    app gets, and the futures they wait on."""

    __slots__ = ("cycle", "loop", "task", "room", "hangup", "server")

    def __init__(self, server, cycle):
        self.server = server
        self.cycle = cycle
        self.loop = server.loop
        self.task = None
        self.room = None
        self.hangup = None

    async def receive(self):
        message = self.cycle.receive()
        while message is None:
            # HTTP: the body was delivered, wait until the client goes away.
            # WebSocket: wait for the next message or the disconnect.
            self.hangup = self.loop.create_future()
            self.cycle.watch_inbound()
            try:
                await self.hangup
            finally:
                self.hangup = None
            message = self.cycle.receive()
        return message

    async def send(self, message):
        if self.cycle.send(message):
            # Too much unwritten output: wait for the client to read.
            self.room = self.loop.create_future()
            self.cycle.wait_room()
            try:
                await self.room
            finally:
                self.room = None
            self.cycle.check_gone()

    async def serve(self, scope):
        try:
            await self.server.app(scope, self.receive, self.send)
        except asyncio.CancelledError:
            self.cycle.cancelled()
        except BaseException as exc:
            self.cycle.failed(exc)
        else:
            self.cycle.returned()
        finally:
            self.server.exchanges.pop(self.cycle.id, None)

    def on_hangup(self):
        if self.hangup is not None and not self.hangup.done():
            self.hangup.set_result(None)
        if self.task is not None and not self.task.done() and not self.cycle.complete:
            # The app gets the grace period to notice, then it is cancelled.
            self.loop.call_later(self.server.grace, self._cancel)

    def on_inbound(self):
        if self.hangup is not None and not self.hangup.done():
            self.hangup.set_result(None)

    def on_room(self):
        if self.room is not None and not self.room.done():
            self.room.set_result(None)

    def _cancel(self):
        if self.task is None or self.task.done() or self.cycle.complete:
            return
        if self.cycle.gone:
            self.task.cancel()
        else:
            # Only half-closed: the client may still read its response
            # (RFC 9112 section 9.6). Look again after another period.
            self.loop.call_later(self.server.grace, self._cancel)


class Server:
    def __init__(self, hub, app, loop, lifespan_mode, grace):
        self.hub = hub
        self.app = app
        self.loop = loop
        self.grace = grace
        self.exchanges = {}
        self.tasks = set()
        self.lifespan = Lifespan(app, loop, lifespan_mode, hub)
        self.stopping = False

    def on_wake(self):
        cycles, notes, stop = self.hub.take()
        for kind, ident in notes:
            ex = self.exchanges.get(ident)
            if ex is None:
                continue
            if kind == NOTE_ROOM:
                ex.on_room()
            elif kind == NOTE_INBOUND:
                ex.on_inbound()
            else:
                ex.on_hangup()
        state = self.lifespan.state
        for cycle in cycles:
            scope = cycle.scope
            if state is not None:
                scope["state"] = state.copy()
            ex = Exchange(self, cycle)
            self.exchanges[cycle.id] = ex
            task = self.loop.create_task(ex.serve(scope))
            ex.task = task
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            cycle.watch_hangup()
        if stop is not None and not self.stopping:
            self.stopping = True
            self.loop.create_task(self.shutdown(stop))

    async def shutdown(self, timeout):
        if self.tasks:
            done, pending = await asyncio.wait(list(self.tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        await self.lifespan.shutdown(timeout)
        self.loop.stop()


class Lifespan:
    """The ASGI lifespan protocol: startup before the first request,
    shutdown when the worker stops."""

    def __init__(self, app, loop, mode, hub):
        self.app = app
        self.loop = loop
        self.mode = mode
        self.hub = hub
        self.state = None
        self.task = None
        self.events = asyncio.Queue()
        self.started = loop.create_future()
        self.stopped = loop.create_future()
        self.startup_error = None
        self.shutdown_error = None

    async def startup(self):
        """None when the app started (or does not speak lifespan and the
        mode allows that), else the message to stop the worker with."""
        if self.mode == "off":
            return None
        self.state = {}
        self.task = self.loop.create_task(self.main())
        await self.events.put({"type": "lifespan.startup"})
        await asyncio.wait([self.started, self.task], return_when=asyncio.FIRST_COMPLETED)
        if self.startup_error is not None:
            return self.startup_error
        if not self.started.done():
            # The app returned without answering: it does not do lifespan.
            self.started.set_result(None)
        return None

    async def main(self):
        scope = {"type": "lifespan", "asgi": dict(LIFESPAN_ASGI), "state": self.state}
        try:
            await self.app(scope, self.receive, self.send)
        except BaseException:
            text = _format_exc()
            if not self.started.done():
                if self.mode == "auto":
                    self.hub.log_info("ASGI 'lifespan' protocol appears unsupported.")
                    self.hub.log_debug(text)
                    self.state = None
                else:
                    self.startup_error = "Exception in 'lifespan' protocol\n" + text
                self.started.set_result(None)
            elif not self.stopped.done():
                self.hub.log_error("Exception in 'lifespan' protocol\n" + text)
        finally:
            if not self.stopped.done():
                self.stopped.set_result(None)

    async def receive(self):
        return await self.events.get()

    async def send(self, message):
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "lifespan.startup.complete" and not self.started.done():
            self.started.set_result(None)
        elif kind == "lifespan.startup.failed" and not self.started.done():
            text = message.get("message") or ""
            self.startup_error = "Application startup failed." + ("\n" + text if text else "")
            self.started.set_result(None)
        elif kind == "lifespan.shutdown.complete" and not self.stopped.done():
            self.stopped.set_result(None)
        elif kind == "lifespan.shutdown.failed" and not self.stopped.done():
            text = message.get("message") or ""
            self.hub.log_error("Application shutdown failed." + ("\n" + text if text else ""))
            self.stopped.set_result(None)
        else:
            raise RuntimeError("unexpected ASGI lifespan message %r" % (kind,))

    async def shutdown(self, timeout):
        if self.task is None or self.task.done():
            return
        await self.events.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(asyncio.shield(self.stopped), timeout=max(timeout, 1.0))
        except asyncio.TimeoutError:
            self.hub.log_error("ASGI lifespan shutdown did not complete in time")
        await self.abandon()

    async def abandon(self):
        """Cancel the lifespan task if it is still running."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.wait([self.task], timeout=1.0)
