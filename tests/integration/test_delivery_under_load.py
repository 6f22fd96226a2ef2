"""No message loss for healthy subscribers under load (Step 4).

N numbered messages go to a channel with M subscribers while publishers
on other channels (one over WebSocket, one through the HTTP API) keep the
broker busy, short-lived subscribers come and go on the same channel, and
a few designated slow readers on it get cut off. Every healthy
subscriber, on every channel, must get each number exactly once and in
order; the slow readers are reported and must be exactly the designated
ones.

Sizes: N = 2000 messages of 64 bytes to M = 500 subscribers (a million
frames, the bulk of the time), plus 1000 messages to 100 subscribers and
100 API messages to 50. outbound_queue_max is 16 KiB so that 2000 small
messages are enough to push a slow reader past it (with what the kernels
hold, after 650-850); each publisher stays at most 10 KiB ahead of its
slowest healthy subscriber, below that limit even before the kernels take
their share. The same
sizes serve the plain build (3-6 s) and ASan (4-10 s)."""

import threading

from loadgen import (ApiPublisher, Publisher, SlowReaders, Stream, SubscriberPool,
                     dropped_peers, metric, publish, wait_metric)
from step2util import API_TOKEN
from wsclient import ws_connect

QUEUE_MAX = 16 * 1024
N = 2000
M = 500
SLOW = 5
BG_MESSAGES = 1000
BG_SUBSCRIBERS = 100
API_MESSAGES = 100
API_SUBSCRIBERS = 50
WINDOW_BYTES = 10 * 1024              # how far a publisher may run ahead
CHURN_INTERVAL = 0.01
DROPS = "wsbroker_slow_reader_drops_total"


class Churn(threading.Thread):
    """Subscribes a new connection to a channel every CHURN_INTERVAL and
    drops the previous one unread, so the channel's subscriber list
    changes while messages fan out."""

    def __init__(self, port, path):
        super().__init__(daemon=True)
        self.port = port
        self.path = path
        self.count = 0
        self.error = None
        self.halt = threading.Event()

    def run(self):
        try:
            while not self.halt.wait(CHURN_INTERVAL):
                ws_connect(self.port, self.path).close()
                self.count += 1
        except Exception as exc:          # reported by the test
            self.error = exc

    def stop(self):
        self.halt.set()
        self.join(10)
        assert self.error is None, self.error


def test_every_healthy_subscriber_gets_all_numbers_in_order_under_load(broker):
    b = broker(limits={"max_connections": 4000, "outbound_queue_max": QUEUE_MAX},
               http={"api_token": API_TOKEN}, log_level="info")
    groups = [{"name": "main", "path": "/chat/main", "count": M},
              {"name": "bg", "path": "/chat/bg", "count": BG_SUBSCRIBERS},
              {"name": "api", "path": "/chat/api", "count": API_SUBSCRIBERS}]
    with SubscriberPool(b.port, groups) as pool:
        slow = SlowReaders(b.port, "/chat/main", SLOW)
        main = Publisher(b.port, "/quiet/main", 64)
        background = Publisher(b.port, "/quiet/bg", 256)
        api = ApiPublisher(b.port, "room:api", 64)
        churn = Churn(b.port, "/chat/main")
        churn.start()
        try:
            seconds = publish(pool, [
                Stream("main", main, N, rate=1000, window=WINDOW_BYTES // 66, burst=20),
                Stream("bg", background, BG_MESSAGES, rate=500, window=WINDOW_BYTES // 260,
                       burst=20),
                Stream("api", api, API_MESSAGES, rate=50, window=WINDOW_BYTES // 66, burst=1),
            ])
            churn.stop()
            caught_up = all(pool.wait_reached(group, count, 30) for group, count in
                            (("main", N), ("bg", BG_MESSAGES), ("api", API_MESSAGES)))
            drops = wait_metric(b.port, DROPS, SLOW, 10)
            outcomes = slow.outcomes(timeout=10)
            slow_addresses = slow.addresses()
            # Everybody else is still subscribed (the two WebSocket
            # publishers too: a broadcast route subscribes its sender).
            subscriptions = metric(b.port, "wsbroker_subscriptions")
        finally:
            churn.halt.set()
            slow.close()
            main.close()
            background.close()
        results = pool.stop()

    dropped = dropped_peers(b.log_lines())
    print("\npublished %d + %d + %d messages in %.1f s with %d subscribers coming and going; "
          "main channel latency %s" % (N, BG_MESSAGES, API_MESSAGES, seconds, churn.count,
                                       results.latency("main", 0).summary()))
    print("cut off as slow readers (%d):" % len(dropped))
    for peer, queued in sorted(dropped.items()):
        outcome = outcomes[slow_addresses.index(peer)] if peer in slow_addresses else None
        print("  %s: %d bytes queued; it read %s" % (
            peer, queued, "%d whole frames" % outcome["frames"] if outcome else "?"))

    assert caught_up
    for group, count in (("main", N), ("bg", BG_MESSAGES), ("api", API_MESSAGES)):
        failures = results.failures(group, 1, count)
        assert failures == [], "%s: %d healthy subscribers failed: %s" % (
            group, len(failures), failures[:5])
    # The slow readers, and nobody else, were cut off long before the end.
    assert drops == SLOW
    assert sorted(dropped) == sorted(slow_addresses)
    for outcome in outcomes:
        assert outcome["ended"], outcome
        assert outcome["frames"] < N, outcome
    assert subscriptions == M + BG_SUBSCRIBERS + API_SUBSCRIBERS + 2
