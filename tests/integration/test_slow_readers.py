"""Slow readers under load (Step 4): a subscriber that stops reading is cut
off at outbound_queue_max while a thousand others on the same channel keep
getting everything, in order and in time, and the broker's memory grows
with the slow readers only as far as their queues allow.

Sizes: 1000 healthy subscribers in one worker process, 200 slow readers,
1 KiB messages and a 256 KiB outbound_queue_max. A slow reader is cut off
once about 300 KiB went its way (its queue plus what the kernels hold,
see loadgen.SlowReaders), so after about 300 messages; with the runs
before and after them every healthy subscriber reads about 640 messages,
640 MB through loopback in all, the bulk of the test's time. The same
sizes serve the plain build and ASan (4-10 s each, depending on the
machine's other load); ASan's extra cost is the broker's user time, a
small share here.

Under AddressSanitizer the memory bounds double and its quarantine is off
for these brokers: its allocator pads every block (about 1.5 times the
plain figures here) and would otherwise hold every freed block back for
reuse, so RSS would count the traffic instead of what the broker keeps."""

import time

import pytest

from loadgen import (PeakRss, Publisher, SlowReaders, SubscriberPool, dropped_peers, metric,
                     publish_paced, rss_kib, wait_metric)

QUEUE_MAX = 256 * 1024
MESSAGE = 1024
FRAME = MESSAGE + 4                    # a 16-bit length header
HEALTHY = 1000
SLOW = 200
RATE = 200                             # messages per second
WINDOW = 64                            # 64 KiB: far below QUEUE_MAX
SEGMENT = 20                           # messages timed together
BASELINE_SEGMENTS = 8                  # before the slow readers come and after they went
SLOW_SEGMENTS = 30                     # at most, with them: 300 messages cut them off
DROPS = "wsbroker_slow_reader_drops_total"

# What one slow reader may cost the broker before it is cut off: its queue
# holds at most QUEUE_MAX bytes plus the frame that crossed the limit.
# Frames of 1 KiB and more are shared, but libevent gives every referenced
# piece its own chain of at least 1 KiB (MIN_BUFFER_SIZE), so a queue of
# 1 KiB frames costs about its length in chains; smaller frames are
# copied, which costs their length too. So: QUEUE_MAX, plus a quarter for
# the connection itself and malloc's rounding. An unbounded queue, or one
# whose memory is a multiple of its length, would pass this at once.
PER_SLOW_READER_KIB = 1.25 * QUEUE_MAX / 1024
# Shared by all: the frames the slow queues hold (one queue's worth, since
# they all lag on the same messages), the healthy queues and heap slack.
SHARED_KIB = 8 * 1024


def broker_for_load(broker):
    return broker(limits={"max_connections": 4000, "outbound_queue_max": QUEUE_MAX},
                  log_level="info")


def median(values):
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


class Segments:
    """Publishes SEGMENT messages at a time, each run of them with its own
    phase number, so that latency can be told apart by stretch of time."""

    def __init__(self, pool, publisher):
        self.pool = pool
        self.publisher = publisher
        self.phases = []
        self.seconds = 0.0

    def run(self):
        phase = len(self.phases)
        self.seconds += publish_paced(self.pool, "healthy", self.publisher, SEGMENT, RATE,
                                      WINDOW, phase=phase)
        self.phases.append(phase)
        return phase


def test_slow_readers_are_cut_off_while_1000_healthy_keep_latency_and_order(broker,
                                                                            memory_scale):
    """Healthy latency is compared stretch by stretch: the p99 of each
    SEGMENT messages, the median of those with slow readers against the
    median of those before and after them. One noisy second on a shared
    machine moves a whole-run p99 by itself; it moves a median of twenty
    stretches by at most one place, while slow readers that slowed the
    broker would slow every stretch they were present in."""
    b = broker_for_load(broker)
    pid = b.proc.pid
    with SubscriberPool(b.port, [{"name": "healthy", "path": "/chat/load",
                                  "count": HEALTHY}]) as pool:
        publisher = Publisher(b.port, "/quiet/load", MESSAGE)
        segments = Segments(pool, publisher)
        baseline = [segments.run() for _ in range(BASELINE_SEGMENTS)]
        assert pool.wait_reached("healthy", publisher.sent, 30)
        rss_before = rss_kib(pid)

        slow = SlowReaders(b.port, "/chat/load", SLOW)
        try:
            peak = PeakRss(pid)
            loaded = []
            while len(loaded) < SLOW_SEGMENTS and metric(b.port, DROPS) < SLOW:
                loaded.append(segments.run())
            drops = wait_metric(b.port, DROPS, SLOW, 10)
            caught_up = pool.wait_reached("healthy", publisher.sent, 30)
            rss_peak = peak.stop()
            outcomes = slow.outcomes(timeout=10)
            time.sleep(0.2)                   # the dropped connections are freed
            rss_after = rss_kib(pid)
            slow_addresses = slow.addresses()
        finally:
            slow.close()
        # Baseline again, after them: the two baselines bracket the loaded
        # stretches in time, as load from elsewhere on the machine comes
        # and goes.
        baseline += [segments.run() for _ in range(BASELINE_SEGMENTS)]
        total = publisher.sent
        caught_up = pool.wait_reached("healthy", total, 30) and caught_up
        results = pool.stop()
        publisher.close()

    def p99s(phases):
        return [results.latency("healthy", phase).percentile(99) for phase in phases]

    base_p99 = median(p99s(baseline))
    loaded_p99 = median(p99s(loaded))
    growth = rss_peak - rss_before
    print("\n%d messages at %.0f/s" % (total, total / segments.seconds))
    print("healthy latency without slow readers: %s; median stretch p99 %.1f ms" %
          (results.latency("healthy", baseline).summary(), 1000 * base_p99))
    print("healthy latency with %d slow readers: %s; median stretch p99 %.1f ms" %
          (SLOW, results.latency("healthy", loaded).summary(), 1000 * loaded_p99))
    print("broker RSS: %d KiB before, %d KiB peak, %d KiB after; growth %d KiB, "
          "%.1f KiB per slow reader (outbound_queue_max %d KiB)" %
          (rss_before, rss_peak, rss_after, growth, growth / SLOW, QUEUE_MAX // 1024))
    closes = [o["close_code"] for o in outcomes]
    print("slow readers: %d ended, %d saw a close frame, %d-%d bytes each before the end" %
          (sum(o["ended"] for o in outcomes), sum(c is not None for c in closes),
           min(o["bytes"] for o in outcomes), max(o["bytes"] for o in outcomes)))

    # Every healthy subscriber got every message, in order, and stayed.
    assert caught_up
    failures = results.failures("healthy", 1, total)
    assert failures == [], "%d healthy subscribers failed: %s" % (len(failures), failures[:5])

    # Every slow reader, and only those, was cut off: counted, logged with
    # its address, and its connection ended long before the end of the
    # stream. Its close frame follows what was queued for it and reaches
    # it only if it reads again within close_timeout, as it does here when
    # the machine is quick enough; a close frame that arrives says 1008.
    assert drops == SLOW
    dropped = dropped_peers(b.log_lines())
    assert sorted(dropped) == sorted(slow_addresses)
    assert all(queued > QUEUE_MAX for queued in dropped.values())
    for outcome in outcomes:
        assert outcome["ended"], outcome
        assert outcome["bytes"] < total * FRAME / 2, outcome
        assert outcome["close_code"] in (None, 1008), outcome
    healthy_ports = {c["port"] for c in results.group("healthy")}
    assert not healthy_ports & {int(peer.rsplit(":", 1)[1]) for peer in dropped}

    # The healthy ones kept their latency.
    assert loaded_p99 <= 3 * base_p99 + 0.05, \
        "median stretch p99 %.1f ms with slow readers, %.1f ms without" % (
            1000 * loaded_p99, 1000 * base_p99)

    # Memory: bounded by what the slow queues may hold.
    assert growth <= memory_scale * (SLOW * PER_SLOW_READER_KIB + SHARED_KIB), growth


def slow_reader_growth(broker, count, message):
    """RSS growth (KiB) of a fresh broker while count slow readers on one
    channel are pushed past outbound_queue_max, and the messages it took."""
    b = broker_for_load(broker)
    pid = b.proc.pid
    slow = SlowReaders(b.port, "/chat/mem", count)
    publisher = Publisher(b.port, "/quiet/mem", message)
    try:
        before = rss_kib(pid)
        peak = PeakRss(pid)
        burst = max(1, 65536 // message)
        limit = 50 * (QUEUE_MAX // message + 1)
        while metric(b.port, DROPS) < count and publisher.sent < limit:
            publisher.send(burst)
        growth = peak.stop() - before
        assert wait_metric(b.port, DROPS, count, 10) == count
        assert len(dropped_peers(b.log_lines())) == count
    finally:
        slow.close()
        publisher.close()
    b.stop()
    return growth, publisher.sent


@pytest.mark.parametrize("message", [64, MESSAGE, 4096])
def test_broker_memory_grows_with_slow_readers_only_as_far_as_their_queues(broker, message,
                                                                          memory_scale):
    """Fresh brokers with 50 and then 200 slow readers and nobody else:
    the memory one slow reader costs stays under PER_SLOW_READER_KIB, and
    the 150 extra readers add no more than that each, whatever the size of
    the messages queued (a queue of many small ones once cost 16 times
    outbound_queue_max)."""
    few, few_sent = slow_reader_growth(broker, 50, message)
    many, many_sent = slow_reader_growth(broker, 200, message)
    print("\n%d-byte messages, RSS growth: %d KiB for 50 slow readers (%.1f each, %d messages), "
          "%d KiB for 200 (%.1f each, %d messages)" %
          (message, few, few / 50, few_sent, many, many / 200, many_sent))
    assert few <= memory_scale * (50 * PER_SLOW_READER_KIB + SHARED_KIB)
    assert many <= memory_scale * (200 * PER_SLOW_READER_KIB + SHARED_KIB)
    assert (many - few) / 150 <= memory_scale * PER_SLOW_READER_KIB


def test_the_kernel_holds_little_for_a_slow_reader_on_loopback(broker):
    """A slow reader that announces loopback's 64 KiB MSS: Linux would
    start the broker's send buffer for it at 4 MiB, out of
    outbound_queue_max's sight. What reaches the reader once it is cut off
    (what the kernels held, then its queue) must stay small."""
    b = broker(limits={"outbound_queue_max": 65536})
    slow = SlowReaders(b.port, "/chat/k", 1, maxseg=None)
    publisher = Publisher(b.port, "/quiet/k", MESSAGE)
    try:
        while metric(b.port, DROPS) < 1 and publisher.sent < 20000:
            publisher.send(64)
        assert wait_metric(b.port, DROPS, 1, 10) == 1
        outcome = slow.outcomes(timeout=10)[0]
    finally:
        slow.close()
        publisher.close()
    print("\nthe kernels held %d bytes for the slow reader" % outcome["bytes"])
    assert outcome["ended"]
    # Counted from the cut: what comes after it (the queue, 64 KiB) is not
    # the kernels' share.
    assert outcome["bytes"] <= 65536 + 128 * 1024


def test_a_cut_off_reader_that_reads_again_gets_its_queue_then_1008(broker):
    """A reader cut off gets no more messages, but what was queued for it
    stays queued, and its close frame follows: reading again within
    close_timeout, it gets an unbroken run of messages, then 1008."""
    # It reads at once; close_timeout only ends the connection afterwards,
    # as the reader does not answer the close.
    b = broker(limits={"outbound_queue_max": 65536}, websocket={"close_timeout": 3})
    slow = SlowReaders(b.port, "/chat/r", 1)
    publisher = Publisher(b.port, "/quiet/r", MESSAGE)
    try:
        while metric(b.port, DROPS) < 1 and publisher.sent < 20000:
            publisher.send(16)
        publisher.send(16)            # after the cut: none of these reach it
        outcome = slow.outcomes(timeout=10)[0]
    finally:
        slow.close()
        publisher.close()
    numbers = outcome["numbers"]
    assert outcome["ended"]
    assert outcome["close_code"] == 1008
    assert numbers == list(range(1, len(numbers) + 1))
    assert 65536 <= len(numbers) * FRAME <= 65536 + 128 * 1024
    assert len(numbers) < publisher.sent


def test_a_reader_that_stops_for_good_is_dropped_at_close_timeout(broker):
    """Cut off, it is sent a close frame after its queue; when it never
    reads them, its connection ends close_timeout later, the queue and the
    close frame with it."""
    b = broker(limits={"outbound_queue_max": 65536}, websocket={"close_timeout": 1})
    slow = SlowReaders(b.port, "/chat/t", 1)
    publisher = Publisher(b.port, "/quiet/t", MESSAGE)
    try:
        while metric(b.port, DROPS) < 1 and publisher.sent < 20000:
            publisher.send(16)
        cut_off = time.monotonic()
        b.wait_log("close timeout %s " % slow.addresses()[0], timeout=5)
        waited = time.monotonic() - cut_off
        outcome = slow.outcomes(timeout=5)[0]
    finally:
        slow.close()
        publisher.close()
    assert 0.5 <= waited <= 4, waited
    assert outcome["ended"]
    assert outcome["bytes"] < 65536
