"""Independent real clients (python3-websockets, Tornado) against the broker,
and listening on IPv6 as well as IPv4."""

import asyncio
import os
import signal

import websockets
from tornado.websocket import websocket_connect

BIG_TEXT = "0123456789abcdef" * 3840          # 60 KiB


def run(coro, timeout=20):
    return asyncio.run(asyncio.wait_for(coro, timeout))


# ---------------------------------------------------------------- websockets

def test_websockets_client_echo_text_binary_and_60k(broker):
    b = broker()

    async def main():
        async with websockets.connect(b.url("/echo")) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\x01\xff")
            assert await ws.recv() == b"\x00\x01\xff"
            await ws.send(BIG_TEXT)
            assert await ws.recv() == BIG_TEXT
        return ws.close_code

    assert run(main()) == 1000


def test_websockets_clients_chat_in_a_room(broker):
    b = broker()

    async def main():
        async with websockets.connect(b.url("/chat/room")) as alice, \
                websockets.connect(b.url("/chat/room")) as bob:
            await alice.send('{"user": "alice", "message": "hi bob"}')
            assert await bob.recv() == '{"user": "alice", "message": "hi bob"}'
            assert await alice.recv() == '{"user": "alice", "message": "hi bob"}'
            await bob.send(BIG_TEXT)
            assert await alice.recv() == BIG_TEXT
            assert await bob.recv() == BIG_TEXT

    run(main())


def test_websockets_client_sees_1001_on_sigterm(broker):
    b = broker()

    async def main():
        ws = await websockets.connect(b.url("/chat/room"))
        os.kill(b.proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed:
            pass
        await asyncio.wait_for(ws.wait_closed(), 5)
        return ws.close_code

    assert run(main()) == 1001
    assert b.wait_exit(timeout=5) == 0


# ---------------------------------------------------------------- tornado

def test_tornado_client_echo_and_60k(broker):
    b = broker()

    async def main():
        conn = await websocket_connect(b.url("/echo"))
        await conn.write_message("hello tornado")
        assert await conn.read_message() == "hello tornado"
        await conn.write_message(b"\x01\x02", binary=True)
        assert await conn.read_message() == b"\x01\x02"
        await conn.write_message(BIG_TEXT)
        assert await conn.read_message() == BIG_TEXT
        conn.close(1000, "done")
        assert await conn.read_message() is None
        return conn.close_code

    assert run(main()) == 1000


def test_tornado_and_websockets_clients_share_a_room(broker):
    b = broker()

    async def main():
        tornado_conn = await websocket_connect(b.url("/chat/mixed"))
        async with websockets.connect(b.url("/chat/mixed")) as ws:
            await tornado_conn.write_message("from tornado")
            assert await ws.recv() == "from tornado"
            assert await tornado_conn.read_message() == "from tornado"
            await ws.send(BIG_TEXT)
            assert await tornado_conn.read_message() == BIG_TEXT
            assert await ws.recv() == BIG_TEXT
        tornado_conn.close()

    run(main())


def test_tornado_client_sees_1001_on_sigterm(broker):
    b = broker()

    async def main():
        conn = await websocket_connect(b.url("/chat/room"))
        os.kill(b.proc.pid, signal.SIGTERM)
        assert await asyncio.wait_for(conn.read_message(), 5) is None
        return conn.close_code

    assert run(main()) == 1001
    assert b.wait_exit(timeout=5) == 0


# ---------------------------------------------------------------- IPv6

def test_listens_on_ipv4_and_ipv6(broker):
    b = broker(addresses=("127.0.0.1", "::1"))

    async def main():
        async with websockets.connect(b.url("/chat/both", host="::1")) as v6, \
                websockets.connect(b.url("/chat/both", host="127.0.0.1")) as v4:
            await v6.send("over v6")
            assert await v4.recv() == "over v6"
            await v4.send("over v4")
            assert await v6.recv() == "over v6"
            assert await v6.recv() == "over v4"

    run(main())
    b.wait_log(lambda line: "open" in line and "::1" in line and "/chat/both" in line)
