"""Large request bodies: kept in memory up to --body-buffer-size, then in an
anonymous file in --body-temp-dir, so an upload's size does not show in the
worker's memory. wsgi.input reads either kind the same way."""
import hashlib
import json
import os
import shutil
import time

import pytest

from conftest import run_cli
from support import RawConn, request_bytes, wait_until

MiB = 1 << 20
PATTERN = bytes(range(256)) * 4096  # 1 MiB
# Peak memory a 200 MiB upload may add to an idle worker: the engine's
# buffers and the app's 1 MiB reads, far below the body.
MAX_GROWTH_KB = 64 * 1024

pytestmark = pytest.mark.ferrocorn_only


def pattern_sha256(mib):
    h = hashlib.sha256()
    for _ in range(mib):
        h.update(PATTERN)
    return h.hexdigest()


@pytest.fixture
def body_dir(tmp_path):
    d = tmp_path / "bodies"
    d.mkdir()
    return d


@pytest.fixture
def uploads(serve, body_dir):
    def start(*args):
        return serve("uploads:app", "--body-temp-dir", str(body_dir), *args,
                     env={"TEST_BODY_DIR": str(body_dir)})
    return start


def get_json(conn, target):
    conn.send(request_bytes("GET", target))
    resp = conn.read_final_response()[1]
    assert resp.status == 200, resp
    return json.loads(resp.body)


def post(server, target, body, chunked=False, headers=()):
    """POST `body` (bytes, or an iterable of bytes pieces of known total via
    `headers`) on a fresh connection; returns the response."""
    with server.connect(timeout=60) as conn:
        if chunked:
            conn.send(request_bytes("POST", target, headers=[("Transfer-Encoding", "chunked")]))
            for piece in body:
                conn.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
            conn.send(b"0\r\n\r\n")
        elif isinstance(body, bytes):
            conn.send(request_bytes("POST", target, body=body,
                                    headers=[("Content-Length", str(len(body)))]))
        else:
            conn.send(request_bytes("POST", target, headers=headers))
            for piece in body:
                conn.send(piece)
        return conn.read_final_response()[1]


def test_200_mib_upload_is_hashed_by_the_app_and_worker_memory_stays_flat(uploads, body_dir):
    server = uploads()
    with server.connect() as conn:
        idle = get_json(conn, "/mem")
    size = 200 * MiB
    resp = post(server, "/hash", (PATTERN for _ in range(200)),
                headers=[("Content-Length", str(size))])
    assert resp.status == 200, resp
    got = json.loads(resp.body)
    assert (got["length"], got["sha256"]) == (size, pattern_sha256(200))
    assert got["after_end"] == ""
    assert got["terminated"] is True
    # The body was in one anonymous file, and nothing is left by name.
    assert got["body_files"] == 1
    assert os.listdir(body_dir) == []
    growth = got["VmHWM"] - idle["VmRSS"]
    print("idle VmRSS %d kB, idle VmHWM %d kB, VmHWM after a 200 MiB upload %d kB (+%d kB)"
          % (idle["VmRSS"], idle["VmHWM"], got["VmHWM"], growth))
    assert growth < MAX_GROWTH_KB, got


def test_50_mib_chunked_upload_is_hashed_by_the_app(uploads):
    server = uploads()
    # Uneven chunks so chunk boundaries fall everywhere in the stream.
    pieces = (PATTERN[:300_000], PATTERN[300_000:], PATTERN[:17], PATTERN[17:])
    resp = post(server, "/hash?piece=99991", (p for _ in range(25) for p in pieces),
                chunked=True)
    assert resp.status == 200, resp
    got = json.loads(resp.body)
    assert (got["length"], got["sha256"]) == (50 * MiB, pattern_sha256(50))
    assert got["body_files"] == 1
    assert got["VmHWM"] < 50 * 1024 + MAX_GROWTH_KB


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_small_bodies_stay_in_memory(uploads, chunked):
    server = uploads()
    body = b"hello\nsmall world"
    resp = post(server, "/hash?piece=3", [body] if chunked else body, chunked=chunked)
    got = json.loads(resp.body)
    assert (got["length"], got["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
    assert got["body_files"] == 0


def test_body_of_exactly_the_buffer_size_stays_in_memory_and_one_more_byte_spills(uploads):
    server = uploads("--body-buffer-size", "1000")
    for size, files in [(1000, 0), (1001, 1)]:
        got = json.loads(post(server, "/hash", b"x" * size).body)
        assert (got["length"], got["body_files"]) == (size, files)


def multiline_body():
    """About 3 MiB of lines of varied length, the last without a newline."""
    lines = [b"%d:%s\n" % (i, b"abcdefghij" * (i % 23)) for i in range(25_000)]
    lines.append(b"the end")
    return lines


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
@pytest.mark.parametrize("mode", ["iter", "readline", "readline7", "readlines",
                                  "readlines-hint"])
def test_a_spilled_body_reads_by_lines(uploads, mode, chunked):
    server = uploads()
    lines = multiline_body()
    body = b"".join(lines)
    assert len(body) > 2 * MiB
    pieces = [body[i:i + 100_003] for i in range(0, len(body), 100_003)]
    resp = post(server, "/lines?mode=" + mode, pieces if chunked else body, chunked=chunked)
    assert resp.status == 200, resp
    got = json.loads(resp.body)
    assert got["sha256"] == hashlib.sha256(body).hexdigest()
    assert got["body_files"] == 1
    if mode == "readline7":
        assert got["count"] == sum(-(-len(line) // 7) for line in lines)
        assert got["longest"] == 7
    else:
        assert got["count"] == len(lines)
        assert got["longest"] == max(len(line) for line in lines)
        assert got["unterminated"] == 0


def test_big_content_length_over_limit_request_body_is_413_before_any_byte(uploads):
    server = uploads("--limit-request-body", str(10 * MiB))
    with server.connect() as conn:
        conn.send(request_bytes("POST", "/hash", headers=[("Content-Length", str(200 * MiB))]))
        resp = conn.read_final_response()[1]
    assert resp.status == 413


def test_chunked_body_growing_over_limit_request_body_after_spilling_is_413(uploads):
    server = uploads("--limit-request-body", str(3 * MiB), "--body-buffer-size", "1024")
    with server.connect(timeout=30) as conn:
        conn.send(request_bytes("POST", "/hash", headers=[("Transfer-Encoding", "chunked")]))
        try:
            for _ in range(4):
                conn.send(b"%x\r\n" % len(PATTERN) + PATTERN + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        resp = conn.read_final_response()[1]
    assert resp.status == 413
    # The worker goes on and the file it had started is gone.
    with server.connect() as conn:
        assert get_json(conn, "/fds")["body_files"] == 0


def test_many_spilled_uploads_leave_no_open_file_behind(uploads):
    server = uploads("--body-buffer-size", "1024")
    with server.connect(timeout=30) as conn:
        before = get_json(conn, "/fds")
        for i in range(60):
            body = PATTERN[:20_000 + i]
            chunked = i % 2 == 1
            if chunked:
                conn.send(request_bytes("POST", "/hash?piece=4096",
                                        headers=[("Transfer-Encoding", "chunked")])
                          + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
            else:
                conn.send(request_bytes("POST", "/hash?piece=4096", body=body,
                                        headers=[("Content-Length", str(len(body)))]))
            got = json.loads(conn.read_final_response()[1].body)
            assert (got["length"], got["body_files"]) == (len(body), 1)
        after = get_json(conn, "/fds")
    assert after == before
    assert before["body_files"] == 0


@pytest.mark.parametrize("setting", ["--body-temp-dir", "--worker-tmp-dir"])
def test_missing_temp_dir_stops_the_server_at_start_with_the_setting_named(tmp_path, setting):
    missing = tmp_path / "nope"
    res = run_cli(["-b", "127.0.0.1:0", setting, str(missing), "uploads:app"], cwd=tmp_path)
    assert res.returncode == 1, res
    assert "Invalid value for %s" % setting in res.stderr
    assert str(missing) in res.stderr and "temporary files" in res.stderr


def test_temp_dir_without_write_permission_stops_the_server_at_start(tmp_path):
    if os.geteuid() == 0:
        # Root writes anywhere permissions allow; sysfs refuses new files even to root.
        unwritable = "/sys"
    else:
        unwritable = tmp_path / "read-only"
        unwritable.mkdir(mode=0o555)
    res = run_cli(["-b", "127.0.0.1:0", "--body-temp-dir", str(unwritable), "uploads:app"],
                  cwd=tmp_path)
    assert res.returncode == 1, res
    assert "Invalid value for --body-temp-dir" in res.stderr
    assert "Permission denied" in res.stderr


def test_temp_dir_that_is_a_file_stops_the_server_at_start(tmp_path):
    not_dir = tmp_path / "file"
    not_dir.write_text("")
    res = run_cli(["-b", "127.0.0.1:0", "--body-temp-dir", str(not_dir), "uploads:app"],
                  cwd=tmp_path)
    assert res.returncode == 1, res
    assert "Not a directory" in res.stderr


def test_temp_dir_gone_after_start_is_a_500_with_a_log_line_and_the_worker_goes_on(
        uploads, body_dir):
    server = uploads("--body-buffer-size", "4096")
    shutil.rmtree(body_dir)
    resp = post(server, "/hash", PATTERN[:100_000])
    assert resp.status == 500
    wait_until(lambda: "cannot create a temporary file" in server.log(), 5,
               what="the log line")
    assert str(body_dir) in server.log()
    # Small bodies need no file; once the directory is back, large ones work again.
    assert json.loads(post(server, "/hash", b"tiny").body)["length"] == 4
    body_dir.mkdir()
    got = json.loads(post(server, "/hash", PATTERN[:100_000]).body)
    assert (got["length"], got["body_files"]) == (100_000, 1)


def test_body_buffer_size_zero_keeps_bodies_in_memory(uploads):
    server = uploads("--body-buffer-size", "0")
    got = json.loads(post(server, "/hash", PATTERN[:300_000]).body)
    assert (got["length"], got["body_files"]) == (300_000, 0)


def test_memory_bodies_arriving_in_pieces_are_whole_and_in_order(uploads):
    """A body kept in memory is received straight into its memory once its
    head is in: bytes that arrive with the head, in later pieces, at the end
    together with the next request, and up to the exact length."""
    server = uploads()
    body = PATTERN[:900_000]
    with server.connect(timeout=60) as conn:
        # Head with a little of the body; the rest in pieces of uneven size,
        # the last one glued to a pipelined request.
        conn.send(request_bytes("POST", "/hash", headers=[("Content-Length", str(len(body)))])
                  + body[:1000])
        pos = 1000
        for size in (70_000, 1, 200_000, 333_333):
            time.sleep(0.05)
            conn.send(body[pos:pos + size])
            pos += size
        time.sleep(0.05)
        conn.send(body[pos:] + request_bytes("POST", "/hash", body=b"next",
                                             headers=[("Content-Length", "4")]))
        first = conn.read_final_response()[1]
        second = conn.read_final_response()[1]
    got = json.loads(first.body)
    assert (got["length"], got["sha256"], got["body_files"]) == (
        len(body), hashlib.sha256(body).hexdigest(), 0)
    got = json.loads(second.body)
    assert (got["length"], got["sha256"]) == (4, hashlib.sha256(b"next").hexdigest())


def test_a_client_gone_in_the_middle_of_a_memory_body_leaves_the_worker_serving(uploads):
    server = uploads()
    with server.connect(timeout=10) as conn:
        conn.send(request_bytes("POST", "/hash", headers=[("Content-Length", str(MiB))])
                  + PATTERN[:100_000])
        time.sleep(0.1)
        conn.send(PATTERN[100_000:300_000])
        time.sleep(0.1)
    got = json.loads(post(server, "/hash", PATTERN[:500_000]).body)
    assert (got["length"], got["sha256"]) == (500_000, hashlib.sha256(PATTERN[:500_000]).hexdigest())
