"""Steady traffic with a new connection per request: every connection gets
its answer (accepting, answering with `Connection: close`, shutting down and
closing run thousands of times in a few seconds)."""
import pytest

from conftest import free_port
from servers import PROC_APP, launch  # noqa: F401  (the fixture)
from support import Load

pytestmark = pytest.mark.timeout(60)


def test_a_new_connection_per_request_always_gets_an_answer(launch):
    port = free_port()
    # In the test's own session: the server and the clients then compete for
    # the CPUs as one group, which makes races between closing one
    # connection and accepting the next far likelier to show.
    server = launch(PROC_APP, "-b", "127.0.0.1:%d" % port, workers=2, port=port,
                    new_session=False)
    server.wait_workers(2)
    # The clients close as soon as they have read the body (as http.client
    # does), so the server's shutdown and close race with the next accept.
    load = Load(server.host, server.port, clients=8, keep_alive=False, max_seconds=4,
                max_requests=40000)
    load.start().wait_done()
    load.stop()
    assert load.ok > 1000, load.summary()
    assert load.failures == [], load.summary()
