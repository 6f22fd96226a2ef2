#!/usr/bin/python3
"""wsbroker soak and churn driver.

Runs connect/subscribe/publish/close cycles against a broker for a chosen
time or number of cycles, from several worker processes, and checks that
the broker comes back to where it started: no connection, channel or
descriptor left, resident memory back to its baseline, no sanitizer
report, and every cycle served as the protocol says. See README.md here.

    soak.py --binary src/wsbroker --seconds 3600
    soak.py --attach 127.0.0.1:8080 --pid 1234 --cycles 100000

Exit status: 0 when every check passed, 1 when one failed, 2 on bad usage.
"""

import argparse
import collections
import json
import multiprocessing
import os
import sys
import time

sys.dont_write_bytecode = True     # nothing left behind in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import brokerctl  # noqa: E402
import churn      # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(description="wsbroker soak and churn driver")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--binary", default=os.environ.get("WSBROKER_BIN"),
                        help="wsbroker binary to start (default: $WSBROKER_BIN)")
    target.add_argument("--attach", metavar="HOST:PORT",
                        help="use a running broker instead; it needs a broadcast route "
                             "/chat/:room and a pubsub route /ws (the sample config has both)")
    p.add_argument("--pid", type=int, help="with --attach: the broker's PID, for RSS and "
                   "descriptor figures")
    p.add_argument("--seconds", type=float,
                   help="duration of the measured run (default 60, or no limit with --cycles)")
    p.add_argument("--cycles", type=int, help="stop after this many cycles (or at --seconds, "
                   "when given too, whichever comes first)")
    p.add_argument("--warmup", type=float, help="seconds of churn before the baseline "
                   "is taken (default: 10%% of the run, 3..30)")
    p.add_argument("--workers", type=int, default=2, help="client processes (default 2)")
    p.add_argument("--concurrency", type=int, default=64,
                   help="cycles in flight per worker (default 64)")
    p.add_argument("--half-open", type=int, default=8,
                   help="half-open connections at most per worker (default 8)")
    p.add_argument("--half-open-wait", type=float,
                   help="seconds a half-open connection stays silent before it must have "
                        "been dropped (default: our ping_timeout + 1 = %d); with --attach, "
                        "half-open cycles run only when this is given, above the broker's "
                        "ping_timeout" % (brokerctl.TIMEOUTS["ping_timeout"] + 1))
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds any one expected reply may take (default 10)")
    p.add_argument("--rss-tolerance", type=float, default=2048,
                   help="KiB the RSS after the run may exceed the baseline by (default 2048)")
    p.add_argument("--rss-check", choices=("auto", "on", "off"), default="auto",
                   help="judge RSS: auto skips sanitizer builds, whose RSS is mostly "
                        "quarantine and shadow memory (default auto)")
    p.add_argument("--reload-every", type=float, default=5.0,
                   help="with --binary: SIGHUP the broker with a rewritten config every so "
                        "many seconds of the run; 0: never (default 5)")
    p.add_argument("--max-errors", type=int, default=0,
                   help="failed cycles tolerated (default 0)")
    p.add_argument("--quiesce-timeout", type=float, default=30.0,
                   help="seconds to wait for the broker to be idle again (default 30)")
    p.add_argument("--keep-dir", help="with --binary: work directory for config and log "
                   "(default: a temporary one, removed after a pass)")
    p.add_argument("--json", metavar="FILE", help="also write the summary as JSON")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: time)")
    args = p.parse_args(argv)
    if not args.attach and not args.binary:
        p.error("give --binary (or set WSBROKER_BIN) or --attach")
    if args.attach and ":" not in args.attach:
        p.error("--attach wants HOST:PORT")
    if args.seconds is None:
        args.seconds = 60.0 if args.cycles is None else float(1 << 40)
    if args.seconds <= 0 or args.workers < 1 or args.concurrency < 1 or \
            (args.cycles is not None and args.cycles < 1):
        p.error("--seconds, --cycles, --workers and --concurrency must be positive")
    if args.warmup is None:
        args.warmup = min(30.0, max(3.0, min(args.seconds, 600) / 10))
    if args.half_open_wait is None:
        if args.attach:
            args.half_open = 0
        args.half_open_wait = brokerctl.TIMEOUTS["ping_timeout"] + 1.0
    if args.seed is None:
        args.seed = int(time.time())
    return args


def source_addresses(host, count):
    """One loopback source address per worker (127.0.0.2, .3 ...), so that
    each has a whole ephemeral port range; none elsewhere."""
    if not host.startswith("127."):
        return [None] * count
    return ["127.0.0.%d" % (2 + i) for i in range(count)]


class Run:
    """One phase of churn (warm-up or the measured run) over all workers."""

    def __init__(self, args, broker, settings):
        self.args = args
        self.broker = broker
        self.settings = settings
        self.context = multiprocessing.get_context("fork")

    def go(self, label, seconds, cycles, sample):
        workers = self.args.workers
        results = self.context.Queue()
        progress = [self.context.Value("Q", 0, lock=False) for _ in range(workers)]
        sources = source_addresses(self.broker.host, workers)
        share = [cycles // workers + (1 if i < cycles % workers else 0) for i in range(workers)]
        procs = []
        for i in range(workers):
            proc = self.context.Process(
                target=churn.worker_process,
                args=(self.settings, i, sources[i], self.args.seed * 1000 + i * 7 + len(label),
                      seconds, share[i], progress[i], results))
            proc.start()
            procs.append(proc)
        started = time.monotonic()
        last_report = started
        reports = []
        # Workers finish the cycles they started after the deadline: the
        # longest is a half-open one.
        limit = seconds + self.args.half_open_wait + 3 * self.args.timeout + 30
        while len(reports) < workers:
            try:
                reports.append(results.get(timeout=0.5))
            except Exception:        # queue.Empty
                pass
            sample()
            now = time.monotonic()
            if now - last_report >= 10:
                done = sum(v.value for v in progress)
                print("  %s %5.0f s: %d cycles, %.0f/s, RSS %s KiB" %
                      (label, now - started, done, done / (now - started),
                       self.broker.rss_kib()), flush=True)
                last_report = now
            if now - started > limit:
                break
            if not self.broker.alive():
                time.sleep(1)    # let workers notice and report
        elapsed = time.monotonic() - started
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join()
        return merge(reports, workers), elapsed


def merge(reports, expected):
    total = {"cycles": collections.Counter(), "endings": collections.Counter(),
             "errors": collections.Counter(), "messages": 0}
    for report in reports:
        for key in ("cycles", "endings", "errors"):
            total[key].update(report[key])
        total["messages"] += report["messages"]
    if len(reports) < expected:
        total["errors"]["worker reported nothing"] += expected - len(reports)
    return total


class Sampler:
    """Called every half second of the run: the peak figures, and the
    periodic reload."""

    def __init__(self, broker, reload_every):
        self.broker = broker
        self.peak = None
        self.peak_fds = None
        self.reload_every = reload_every if broker.owned else 0
        self.next_reload = None

    def __call__(self):
        now = time.monotonic()
        if self.reload_every > 0:
            if self.next_reload is None:
                self.next_reload = now + self.reload_every
            elif now >= self.next_reload and self.broker.alive():
                self.broker.reload()
                self.next_reload = now + self.reload_every
        rss = self.broker.rss_kib()
        if rss is not None and (self.peak is None or rss > self.peak):
            self.peak = rss
        fds = self.broker.fd_count()
        if fds is not None and (self.peak_fds is None or fds > self.peak_fds):
            self.peak_fds = fds


def main(argv):
    args = parse_args(argv)
    if args.attach:
        host, _, port = args.attach.rpartition(":")
        broker = brokerctl.Broker.attach(host.strip("[]"), int(port), args.pid)
    else:
        broker = brokerctl.Broker.start(os.path.abspath(args.binary), keep_dir=args.keep_dir)
    sanitized = broker.binary is not None and brokerctl.links_sanitizer(broker.binary)
    judge_rss = args.rss_check == "on" or (args.rss_check == "auto" and not sanitized and
                                           broker.pid is not None)
    timeouts = brokerctl.TIMEOUTS
    settings = churn.Settings(
        host=broker.host, port=broker.port, rooms=16, channels=32, timeout=args.timeout,
        half_open_wait=args.half_open_wait,
        http_half_open_wait=(timeouts["handshake_timeout"] + args.timeout if broker.owned
                             else 3600 + args.timeout),
        half_open_per_worker=args.half_open, concurrency=args.concurrency,
        # At most this many 1 KiB messages before the cut: the broker's
        # queue limit plus what the kernel buffers on the way (the broker's
        # send buffer may grow to tcp_wmem's 4 MiB), with room to spare.
        slow_reader_messages=16384)
    if not broker.owned:                      # its timeouts and queue limit are unknown
        churn.KINDS["half_open_http"] = 0
        churn.KINDS["slow_reader"] = 0
    print("wsbroker soak: %s port %d, pid %s%s; %d workers x %d cycles in flight; seed %d" %
          (broker.host, broker.port, broker.pid, " (sanitizer build)" if sanitized else "",
           args.workers, args.concurrency, args.seed), flush=True)

    failures = []
    idle_fds = broker.fd_count()
    run = Run(args, broker, settings)
    sampler = Sampler(broker, args.reload_every)
    summary = {"seed": args.seed, "sanitizer_build": sanitized}

    warm, _ = run.go("warm-up", args.warmup, 1 << 62, lambda: None)
    reached, _, _ = brokerctl.quiesce(broker, idle_fds, args.quiesce_timeout, broker.owned)
    if not reached:
        failures.append("the broker did not become idle after the warm-up")
    baseline = broker.rss_kib()
    baseline_fds = broker.fd_count()

    cycles = args.cycles if args.cycles is not None else 1 << 62
    result, elapsed = run.go("run", args.seconds, cycles, sampler)
    alive_after_run = broker.alive()
    reached, metrics, fds_after = brokerctl.quiesce(broker, idle_fds, args.quiesce_timeout,
                                                    broker.owned)
    after = broker.rss_kib()
    hwm = broker.status_kib("VmHWM")

    done = sum(result["cycles"].values())
    errors = sum(result["errors"].values())
    warm_errors = sum(warm["errors"].values())
    summary.update({
        "seconds": round(elapsed, 1), "cycles": done,
        "cycles_per_second": round(done / elapsed, 1) if elapsed > 0 else 0,
        "warmup_cycles": sum(warm["cycles"].values()),
        "messages_sent": result["messages"], "reloads": broker.reloads,
        "cycles_by_kind": dict(result["cycles"]), "endings": dict(result["endings"]),
        "errors": dict(result["errors"] + warm["errors"]),
        "rss_kib": {"baseline": baseline, "peak": sampler.peak, "after": after, "hwm": hwm},
        "fds": {"idle": idle_fds, "baseline": baseline_fds, "peak": sampler.peak_fds,
                "after": fds_after},
        "metrics_after": {k: v for k, v in (metrics or {}).items()
                          if k.startswith(("wsbroker_connections_open", "wsbroker_channels",
                                           "wsbroker_subscriptions"))},
    })

    if not alive_after_run:
        failures.append("the broker died during the run")
    elif not reached:
        failures.append("the broker did not become idle within %.0f s after the run "
                        "(connections, channels or descriptors left)" % args.quiesce_timeout)
    if errors + warm_errors > args.max_errors:
        failures.append("%d failed cycles (at most %d allowed)" %
                        (errors + warm_errors, args.max_errors))
    if judge_rss and baseline is not None and after is not None and \
            after - baseline > args.rss_tolerance:
        failures.append("RSS after the run is %d KiB above the baseline (tolerance %d KiB)" %
                        (after - baseline, args.rss_tolerance))
    if done == 0:
        failures.append("no cycle completed")

    if broker.owned:
        status = broker.stop(timeouts["shutdown_timeout"] + 30)
        summary["exit_status"] = status
        if status != 0:
            failures.append("the broker exited with status %s on SIGTERM" % status)
        if broker.sanitizer_report():
            failures.append("sanitizer report on the broker's stderr")
        if "reload failed" in broker.log():
            failures.append("a reload failed")
    summary["failures"] = failures
    report(summary, judge_rss, args)
    if failures and broker.owned:
        print("broker log (tail), kept in %s:\n%s" % (broker.workdir, broker.log_tail()))
    elif broker.owned and args.keep_dir is None:
        for name in os.listdir(broker.workdir):
            os.unlink(os.path.join(broker.workdir, name))
        os.rmdir(broker.workdir)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2, sort_keys=True)
    return 1 if failures else 0


def report(s, judge_rss, args):
    rss = s["rss_kib"]
    fds = s["fds"]
    print()
    print("cycles          %d in %.1f s (%.0f/s), after %d warm-up cycles; %d messages sent, "
          "%d reloads" % (s["cycles"], s["seconds"], s["cycles_per_second"],
                          s["warmup_cycles"], s["messages_sent"], s["reloads"]))
    print("by kind         " + ", ".join("%s %d" % kv for kv in sorted(s["cycles_by_kind"].items())))
    print("ws endings      " + ", ".join("%s %d" % kv for kv in sorted(s["endings"].items())))
    if s["errors"]:
        print("errors          " + "; ".join("%s: %d" % kv for kv in sorted(s["errors"].items())))
    else:
        print("errors          none")

    def kib(v):
        return "?" if v is None else "%d" % v
    delta = (rss["after"] - rss["baseline"]) if None not in (rss["after"], rss["baseline"]) else None
    print("RSS KiB         baseline %s, peak %s, after %s (%s%s KiB; %s)" %
          (kib(rss["baseline"]), kib(rss["peak"]), kib(rss["after"]),
           "+" if delta is not None and delta >= 0 else "", kib(delta),
           "tolerance %d" % args.rss_tolerance if judge_rss else "not judged"))
    print("descriptors     idle %s, peak %s, after %s" %
          (kib(fds["idle"]), kib(fds["peak"]), kib(fds["after"])))
    print("after the run   " + ", ".join("%s %d" % kv for kv in sorted(s["metrics_after"].items())))
    if "exit_status" in s:
        print("broker exit     status %s on SIGTERM" % s["exit_status"])
    if s["failures"]:
        print("FAIL: " + "; ".join(s["failures"]))
    else:
        print("PASS")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
