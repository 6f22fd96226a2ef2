"""Churn cycles and the worker process that runs them.

A cycle is one connection's life: connect, maybe upgrade, maybe
subscribe and publish, and an ending. The mix covers what the broker sees
from real clients: clean close handshakes, RSTs with data in flight, FINs
without a close frame, connections dropped before or in the middle of the
handshake, and half-open ones that stop reading and writing and are left
for the broker's timeouts to clear (a bounded number at a time).

Each worker process runs `concurrency` cycles at once on its own asyncio
loop and its own source address, and reports counts back to the driver.
"""

import asyncio
import collections
import json
import os
import random
import resource
import time

from asyncws import (OP_BINARY, OP_PING, OP_TEXT, WS, Closed, Endpoint, SoakError, build_frame,
                     new_key, read_to_eof, reset, upgrade_request)

# Relative weights of the cycle kinds (half-open ones are also capped in
# number, see Settings.half_open_per_worker, and slow readers run one at a
# time per worker).
KINDS = {
    "broadcast": 30,
    "pubsub": 30,
    "echo": 10,
    "pre_handshake": 15,
    "http": 5,
    "half_open_ws": 2,
    "half_open_http": 1,
    "slow_reader": 1,
}

# How a WebSocket cycle ends.
ENDINGS = {
    "clean": 40,
    "rst": 20,
    "fin": 15,
    "close_then_rst": 10,
    "rst_in_flight": 15,
}

PAD = "x" * 200


def weighted(rng, table):
    names = list(table)
    return rng.choices(names, weights=[table[n] for n in names])[0]


class Settings:
    """What a worker needs to know; plain data so it crosses fork()."""

    def __init__(self, host, port, rooms, channels, timeout, half_open_wait,
                 http_half_open_wait, half_open_per_worker, concurrency,
                 slow_reader_messages):
        self.host = host
        self.port = port
        self.rooms = rooms
        self.channels = channels
        self.timeout = timeout
        self.half_open_wait = half_open_wait
        self.http_half_open_wait = http_half_open_wait
        self.half_open_per_worker = half_open_per_worker
        self.concurrency = concurrency
        self.slow_reader_messages = slow_reader_messages


class Worker:
    def __init__(self, settings, index, source, seed):
        self.s = settings
        self.index = index
        self.endpoint = Endpoint(settings.host, settings.port, source)
        self.rng = random.Random(seed)
        self.cycles = collections.Counter()
        self.endings = collections.Counter()
        self.errors = collections.Counter()
        self.messages = 0
        self.serial = 0
        self.half_open_now = 0
        self.slow_reader_now = False

    def token(self):
        self.serial += 1
        return "w%d-%d" % (self.index, self.serial)

    # ------------------------------------------------------------ waiting

    async def within(self, awaitable, what):
        try:
            return await asyncio.wait_for(awaitable, self.s.timeout)
        except asyncio.TimeoutError:
            raise SoakError("timeout: " + what)

    async def await_text(self, ws, match, what):
        """Reads messages until match(opcode, payload) is true; others (other
        clients' traffic, presence events) are skipped."""
        async def scan():
            while True:
                opcode, payload = await ws.recv_message()
                if match(opcode, payload):
                    return payload
        try:
            return await self.within(scan(), what)
        except Closed as closed:
            raise SoakError("unexpected close %d waiting for %s" % (closed.code, what))

    async def guard(self, writer, awaitable):
        """Awaits; when that fails, the connection is reset, so that a
        failed cycle leaves nothing open behind it."""
        try:
            return await awaitable
        except BaseException:
            reset(writer)
            raise

    # ------------------------------------------------------------ endings

    async def end(self, ws, ending):
        self.endings[ending] += 1
        if ending == "clean":
            await self.within(ws.close_handshake(1000), "close handshake")
        elif ending == "fin":
            await self.within(ws.close_fin(), "the broker's FIN after ours")
        elif ending == "close_then_rst":
            ws.send_close(1000)
            ws.close_rst()
        else:
            ws.close_rst()

    async def leave_half_open(self, ws):
        """Neither reads nor writes; the broker's ping timeout must end it."""
        ws.writer.transport.pause_reading()
        await asyncio.sleep(self.s.half_open_wait)
        ws.writer.transport.resume_reading()
        try:
            await asyncio.wait_for(read_to_eof(ws.reader), self.s.timeout)
        except asyncio.TimeoutError:
            raise SoakError("half-open connection not dropped by the broker")
        finally:
            ws.close_rst()

    # ------------------------------------------------------------ cycles

    async def cycle_broadcast(self, half_open=False):
        room = self.rng.randrange(self.s.rooms)
        path = "/chat/r%d" % room
        if self.rng.random() < 0.2:
            path += "?since=0"
        ws = await self.within(WS.connect(self.endpoint, path, self.rng.random() < 0.3),
                               "upgrade")
        await self.guard(ws.writer, self.talk_broadcast(ws, half_open))

    async def talk_broadcast(self, ws, half_open):
        if half_open:
            return await self.leave_half_open(ws)
        ending = weighted(self.rng, ENDINGS)
        tokens = [self.token() for _ in range(self.rng.randint(1, 3))]
        for token in tokens:
            long = self.rng.random() < 0.3
            text = "soak %s %s" % (token, PAD if long else "")
            if self.rng.random() < 0.2:
                ws.send(OP_BINARY, text.encode(), compress=long)
            else:
                ws.send_text(text, compress=long)
            self.messages += 1
        if ending != "rst_in_flight":
            for token in tokens:
                marker = ("soak %s " % token).encode()
                await self.await_text(ws, lambda op, p, m=marker: p.startswith(m),
                                      "own broadcast message")
        await self.end(ws, ending)

    async def pubsub_request(self, ws, request):
        ws.send_text(json.dumps(request, separators=(",", ":")))
        wanted = request["id"]

        def is_reply(opcode, payload):
            if opcode != OP_TEXT:
                return False
            reply = json.loads(payload)
            return reply.get("id") == wanted and reply.get("op") in ("ok", "error")
        reply = json.loads(await self.await_text(ws, is_reply, "reply to " + request["op"]))
        if reply["op"] != "ok":
            raise SoakError("pubsub %s: error %s" % (request["op"], reply.get("code")))
        return reply

    def pubsub_channel(self):
        # room:* channels are shared with the broadcast route (and have
        # presence and history); soak:* channels are pubsub only.
        k = self.rng.randrange(self.s.channels)
        return ("room:r%d" % (k % self.s.rooms)) if self.rng.random() < 0.3 else "soak:%d" % k

    async def cycle_pubsub(self, half_open=False):
        ws = await self.within(WS.connect(self.endpoint, "/ws", self.rng.random() < 0.3),
                               "upgrade")
        await self.guard(ws.writer, self.talk_pubsub(ws, half_open))

    async def talk_pubsub(self, ws, half_open):
        channels = sorted({self.pubsub_channel() for _ in range(self.rng.randint(1, 3))})
        next_id = 1
        for channel in channels:
            request = {"op": "subscribe", "channel": channel, "id": next_id}
            if self.rng.random() < 0.2:
                request["since"] = 0
            await self.pubsub_request(ws, request)
            next_id += 1
        if half_open:
            return await self.leave_half_open(ws)
        ending = weighted(self.rng, ENDINGS)
        tokens = []
        for channel in channels:
            token = self.token()
            long = self.rng.random() < 0.3
            data = {"t": token, "pad": PAD} if long else {"t": token}
            ws.send_text(json.dumps({"op": "publish", "channel": channel, "id": next_id,
                                     "data": data}), compress=long)
            next_id += 1
            self.messages += 1
            tokens.append(token)
        if ending == "rst_in_flight":
            return await self.end(ws, ending)
        pending = set(tokens)
        replies = len(tokens)

        def mine(opcode, payload):
            nonlocal replies
            if opcode != OP_TEXT:
                return False
            event = json.loads(payload)
            if event.get("op") == "ok":
                replies -= 1
            elif event.get("op") == "error":
                raise SoakError("pubsub publish: error %s" % event.get("code"))
            elif event.get("op") == "message" and isinstance(event.get("data"), dict):
                pending.discard(event["data"].get("t"))
            return not pending and replies <= 0
        await self.await_text(ws, mine, "own pubsub messages and publish replies")
        await self.pubsub_request(ws, {"op": "unsubscribe", "channel": channels[0],
                                       "id": next_id})
        await self.end(ws, ending)

    async def cycle_echo(self):
        ws = await self.within(WS.connect(self.endpoint, "/echo", self.rng.random() < 0.3),
                               "upgrade")
        await self.guard(ws.writer, self.talk_echo(ws))

    async def talk_echo(self, ws):
        ending = weighted(self.rng, ENDINGS)
        payload = ("echo %s %s" % (self.token(), PAD)).encode()
        ws.send(OP_BINARY, payload, compress=self.rng.random() < 0.5)
        self.messages += 1
        if ending != "rst_in_flight":
            await self.await_text(ws, lambda op, p: True, "echo")
        await self.end(ws, ending)

    async def cycle_pre_handshake(self):
        """Connections that never become WebSockets from our side."""
        reader, writer = await self.within(self.endpoint.open(), "connect")
        await self.guard(writer, self.drop_early(writer))

    async def drop_early(self, writer):
        request = upgrade_request(self.s.host, self.s.port, "/chat/r0", new_key(), False)
        way = self.rng.randrange(6)
        if way == 0:                       # connect, FIN
            writer.close()
        elif way == 1:                     # connect, RST
            reset(writer)
        elif way in (2, 3):                # part of the head, then FIN or RST
            writer.write(request[:self.rng.randrange(1, len(request) - 4)])
            await writer.drain()
            if way == 2:
                writer.close()
            else:
                reset(writer)
        else:                              # the whole request, gone before the 101
            writer.write(request)
            await writer.drain()
            if way == 4:
                writer.close()
            else:
                reset(writer)
        self.endings["pre_handshake_%d" % way] += 1

    async def cycle_http(self):
        reader, writer = await self.within(self.endpoint.open(), "connect")
        path = "/healthz" if self.rng.random() < 0.8 else "/metrics"
        writer.write(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" %
                      (path, self.s.host)).encode())
        response = await self.guard(writer, self.within(read_to_eof(reader), "HTTP response"))
        writer.close()
        if not response.startswith(b"HTTP/1.1 200 "):
            raise SoakError("GET %s: %r" % (path, response[:40]))

    async def cycle_half_open_http(self):
        """Sends part of a request head and nothing more: handshake_timeout
        must answer 408 and close."""
        reader, writer = await self.within(self.endpoint.open(), "connect")
        writer.write(b"GET /chat/r0 HTTP/1.1\r\nHost: x\r\n")
        try:
            response = await asyncio.wait_for(read_to_eof(reader), self.s.http_half_open_wait)
        except asyncio.TimeoutError:
            raise SoakError("half-open request not timed out by the broker")
        finally:
            reset(writer)
        if not response.startswith(b"HTTP/1.1 408 "):
            raise SoakError("half-open request: %r" % response[:40])

    async def cycle_slow_reader(self):
        """Floods its own broadcast room and reads nothing: the copies of
        its own messages pile up until the broker cuts it off (slow reader),
        in the middle of the very publish that overflowed the queue.

        The cut shows as our writes failing. A flood may fit whole in the
        kernel buffers (the broker's receive buffer grows to tcp_rmem's
        maximum) before the broker has read much of it, so after the flood
        small pings follow until the writes fail, for at most `timeout`
        seconds; they also keep the ping timeout, which would drop the
        connection as well, from standing in for the cut."""
        room = "/chat/slow%d" % self.rng.randrange(self.s.rooms)
        ws = await self.within(WS.connect(self.endpoint, room, rcvbuf=4096), "upgrade")
        ws.writer.transport.pause_reading()
        batch = build_frame(OP_BINARY, b"s" * 1024) * 64     # one mask will do
        ping = build_frame(OP_PING, b"")
        try:
            for _ in range(self.s.slow_reader_messages // 64):
                if ws.writer.transport.is_closing():
                    return                     # the connection is gone: cut off
                ws.writer.write(batch)
                await self.within(ws.drain(), "sending the flood")
            deadline = time.monotonic() + self.s.timeout
            while not ws.writer.transport.is_closing():
                if time.monotonic() > deadline:
                    raise SoakError("slow reader not cut off")
                ws.writer.write(ping)
                await self.within(ws.drain(), "sending pings")
                await asyncio.sleep(0.05)
        except (ConnectionResetError, BrokenPipeError):
            pass                               # cut off
        finally:
            ws.close_rst()

    # ------------------------------------------------------------ loop

    def pick(self):
        while True:
            kind = weighted(self.rng, KINDS)
            if kind.startswith("half_open"):
                if self.half_open_now < self.s.half_open_per_worker:
                    return kind
            elif kind == "slow_reader":
                # One at a time: each has up to outbound_queue_max queued,
                # and the memory peak should not depend on how they bunch.
                if not self.slow_reader_now:
                    return kind
            else:
                return kind

    async def run_one(self, kind):
        if kind == "broadcast":
            await self.cycle_broadcast()
        elif kind == "pubsub":
            await self.cycle_pubsub()
        elif kind == "echo":
            await self.cycle_echo()
        elif kind == "pre_handshake":
            await self.cycle_pre_handshake()
        elif kind == "http":
            await self.cycle_http()
        elif kind == "half_open_http":
            await self.cycle_half_open_http()
        elif kind == "slow_reader":
            self.slow_reader_now = True
            try:
                await self.cycle_slow_reader()
            finally:
                self.slow_reader_now = False
        elif self.rng.random() < 0.5:
            await self.cycle_broadcast(half_open=True)
        else:
            await self.cycle_pubsub(half_open=True)

    async def runner(self, deadline, budget, progress):
        while time.monotonic() < deadline and budget[0] > 0:
            budget[0] -= 1
            kind = self.pick()
            half_open = kind.startswith("half_open")
            self.half_open_now += half_open
            try:
                await self.run_one(kind)
                self.cycles[kind] += 1
            except SoakError as error:
                self.errors["%s: %s" % (kind, error.kind)] += 1
            except OSError as error:
                self.errors["%s: %s" % (kind, type(error).__name__)] += 1
                if isinstance(error, ConnectionRefusedError):
                    await asyncio.sleep(0.1)   # a dead broker must not spin us
            except (ValueError, KeyError, TypeError) as error:
                self.errors["%s: bad reply (%s)" % (kind, type(error).__name__)] += 1
            finally:
                self.half_open_now -= half_open
            progress.value += 1

    async def run(self, seconds, cycles, progress):
        deadline = time.monotonic() + seconds
        budget = [cycles]
        tasks = [asyncio.ensure_future(self.runner(deadline, budget, progress))
                 for _ in range(self.s.concurrency)]
        await asyncio.gather(*tasks)


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def worker_process(settings, index, source, seed, seconds, cycles, progress, results):
    """Entry point of one worker process: runs, then puts its counts on results."""
    raise_nofile()
    worker = Worker(settings, index, source, seed)
    try:
        asyncio.run(worker.run(seconds, cycles, progress))
    except Exception as error:                # reported, never swallowed
        worker.errors["worker crashed: %r" % (error,)] += 1
    results.put({
        "index": index,
        "cycles": dict(worker.cycles),
        "endings": dict(worker.endings),
        "errors": dict(worker.errors),
        "messages": worker.messages,
        "pid": os.getpid(),
    })
