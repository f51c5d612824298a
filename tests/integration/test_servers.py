"""Integration: real daphne processes and a real Redis, publishes from other processes."""

import json
import time

import pytest

from tests.support.servers import manage, recv_json, run_python, subscribe

pytestmark = pytest.mark.servers


# Every combination's end-to-end smoke test: daphne on Redis, a socket subscribed, a hint
# published in another process, delivered.
@pytest.mark.matrix
def test_publish_from_a_separate_process_reaches_a_socket(redis, start_daphne):
    daphne = start_daphne(redis.url)
    with daphne.connect() as ws:
        subscribe(ws, "comments-7")
        # The script exits right after publish(): the hint is flushed at interpreter exit.
        result = run_python(
            "import pushgateway; pushgateway.publish('comments-7', {'pk': '42'})", redis.url
        )
        assert result.returncode == 0, result.stderr
        frame = recv_json(ws)
    assert frame["type"] == "message" and frame["channel"] == "comments-7"
    assert frame["data"] == {"pk": "42"} and frame["id"]


def test_management_command_publishes(redis, start_daphne):
    daphne = start_daphne(redis.url)
    with daphne.connect() as ws:
        subscribe(ws, "events")
        result = manage("pushgateway_publish", "events", "--data", '{"x": 1}', redis_url=redis.url)
        assert result.returncode == 0, result.stderr
        assert "published to events" in result.stdout
        assert recv_json(ws)["data"] == {"x": 1}


def test_two_daphne_processes_on_one_redis_both_deliver_one_publish(redis, start_daphne):
    first, second = start_daphne(redis.url), start_daphne(redis.url)
    with first.connect() as a, second.connect() as b:
        subscribe(a, "shared")
        subscribe(b, "shared")
        result = run_python("import pushgateway; pushgateway.publish('shared', 1)", redis.url)
        assert result.returncode == 0, result.stderr
        frame_a, frame_b = recv_json(a), recv_json(b)
    assert frame_a == frame_b
    assert frame_a["data"] == 1


def test_saving_a_registered_model_in_another_process_is_pushed(
    redis, start_daphne, server_database
):
    daphne = start_daphne(redis.url, database=server_database)
    with daphne.connect() as ws:
        subscribe(ws, "events")
        code = (
            "from demo.models import Event; print(Event.objects.create(title='From a worker').pk)"
        )
        result = run_python(code, redis.url, env=server_database.env)
        assert result.returncode == 0, result.stderr
        frame = recv_json(ws)
    pk = result.stdout.strip()
    assert frame["data"] == {"model": "demo.event", "pk": pk, "action": "created"}


def test_publishing_while_redis_is_down_fails_fast_and_recovers(own_redis, start_daphne):
    daphne = start_daphne(own_redis.url)
    with daphne.connect() as ws:
        subscribe(ws, "c")
        own_redis.stop()

        started = time.monotonic()
        result = manage("pushgateway_publish", "c", "--timeout", "10", redis_url=own_redis.url)
        elapsed = time.monotonic() - started
        assert result.returncode == 1
        assert "gave up on 1 hint(s) after 4 attempts" in result.stderr
        assert "delivery failed" in result.stderr
        assert elapsed < 15  # bounded: three retries with backoff, not a hang

        # A page subscribing meanwhile is told the channel is unavailable, not left hanging.
        with daphne.connect() as late:
            late.send(json.dumps({"type": "subscribe", "channel": "late"}))
            error = recv_json(late, timeout=15)
        assert error["type"] == "error" and error["code"] == "unavailable"
        assert error["channel"] == "late"

        # The server kept its socket; once Redis is back, hints flow again.
        own_redis.start()
        ws.send(json.dumps({"type": "ping"}))
        assert recv_json(ws) == {"type": "pong"}
        deadline = time.monotonic() + 20
        while True:
            result = manage("pushgateway_publish", "c", "--data", "2", redis_url=own_redis.url)
            assert result.returncode == 0, result.stderr
            try:
                frame = recv_json(ws, timeout=1)
                # The hub heals the socket once Redis is back: its resync may overtake the
                # hint (harmless, docs/protocol.md), on a quiet machine it usually does.
                while frame["type"] == "resync":
                    frame = recv_json(ws, timeout=1)
                break
            except TimeoutError:
                assert time.monotonic() < deadline, daphne.process.log()
    assert frame["data"] == 2


def test_the_demo_serves_under_uvicorn(start_daphne, redis):
    """uvicorn finds the ASGI 3 interface by itself (no --interface flag): pages, static
    files and the socket all work, as under daphne."""
    import urllib.request

    from tests.support.servers import Uvicorn

    server = start_daphne(redis.url, server=Uvicorn)
    with urllib.request.urlopen(server.url + "/", timeout=10) as response:
        assert response.status == 200 and b'id="pushgateway-config"' in response.read()
    with urllib.request.urlopen(server.url + "/static/pushgateway/pushgateway.js") as response:
        assert b"createClient" in response.read()
    with server.connect() as ws:
        subscribe(ws, "under-uvicorn")
        assert (
            run_python(
                "import pushgateway; pushgateway.publish('under-uvicorn', 1)", redis.url
            ).returncode
            == 0
        )
        assert recv_json(ws)["data"] == 1


def test_publishing_on_the_in_memory_layer_from_a_shell_says_no_other_process_hears_it():
    """manage.py shell with the embedded default: the save works, and a line (once) says
    that its hints reach no page served by another process."""
    code = "import pushgateway\npushgateway.publish('c', 1)\npushgateway.publish('c', 2)"
    result = run_python(code, None)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("from a process that has served no WebSocket") == 1
