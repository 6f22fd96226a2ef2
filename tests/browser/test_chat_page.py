"""The built-in chat page, in real browsers, against the real daemon.

Headless Chromium sessions join rooms through www/index.html (served by the
broker from http.static_root) and talk over the pubsub route /ws with the
JSON protocol of wsbroker-protocol(7): channel "room:<room>", history
replayed on join, presence for the online list, resume after a reconnect.
The broadcast route /chat/:room and POST /api/publish put messages into a
room from outside the page.
"""
import json
import os
import urllib.request

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

WAIT = 10  # seconds, the longest any single step may take
ANY = object()  # wait_for_entry: any user label, or none


def wait(driver, condition, message):
    return WebDriverWait(driver, WAIT, poll_frequency=0.05).until(condition, message)


def status_state(driver):
    return driver.find_element(By.ID, "status").get_attribute("data-state")


def open_page(driver, url):
    driver.get(url)
    wait(driver, lambda d: d.execute_script("return document.readyState") == "complete",
         "page did not load")


def join(driver, url, name, room, load=True):
    if load:
        open_page(driver, url)
    name_input = driver.find_element(By.ID, "name")
    room_input = driver.find_element(By.ID, "room")
    name_input.clear()
    name_input.send_keys(name)
    room_input.clear()
    room_input.send_keys(room)
    driver.find_element(By.ID, "join-button").click()
    wait(driver, lambda d: status_state(d) == "connected",
         f"{name} did not connect to {room}")


def say(driver, text):
    box = driver.find_element(By.ID, "message")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def entries(driver):
    """The message log as (class list, user, text, time) tuples; user and
    time are None when the entry has none."""
    return [tuple(e) for e in driver.execute_script("""
        return Array.from(document.querySelectorAll('#log > li')).map(function (li) {
            var user = li.querySelector('.user');
            var time = li.querySelector('time');
            return [li.className, user ? user.textContent : null,
                    li.querySelector('.text').textContent,
                    time ? time.textContent : null];
        });""")]


def _matches(entry, user, text):
    _, u, t, _ = entry
    if t != text:
        return False
    if user is ANY:
        return True
    return u == (user + ":") if user is not None else u is None


def wait_for_entry(driver, user, text):
    """Waits until the log shows text (from user) and returns its classes."""
    def seen(d):
        for entry in entries(d):
            if _matches(entry, user, text):
                return entry[0]
        return False
    return wait(driver, seen, f"never saw {user!r}: {text!r}")


def count_entries(driver, text):
    return sum(1 for e in entries(driver) if e[2] == text)


def notices(driver):
    return [t for classes, _, t, _ in entries(driver) if "notice" in classes.split()]


def wait_for_notice(driver, text):
    wait(driver, lambda d: text in notices(d), f"no notice {text!r}; saw {notices(driver)!r}")


def online(driver):
    """The online list, names only (read from the DOM, so it works while the
    list is folded away on a narrow screen)."""
    return driver.execute_script("""
        return Array.from(document.querySelectorAll('#users > li')).map(function (li) {
            return li.firstChild ? li.firstChild.textContent : '';
        });""")


def wait_online(driver, names):
    want = sorted(names)
    wait(driver, lambda d: online(d) == want and
         d.find_element(By.ID, "users-count").get_attribute("textContent") == str(len(want)),
         f"online list is not {want!r}")


def set_offline(driver, offline):
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": offline, "latency": 0,
        "downloadThroughput": -1, "uploadThroughput": -1})


def api_request(broker, method, path):
    request = urllib.request.Request(f"http://127.0.0.1:{broker.port}{path}", method=method,
                                     headers={"Authorization": "Bearer " + broker.api_token})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return answer.status, json.loads(answer.read())


def test_two_browsers_see_each_other_and_chat(broker, browser):
    alice = browser(1000, 700)
    bob = browser(390, 760)          # a phone-sized window
    join(alice, broker.url, "alice", "browser-test")
    wait_online(alice, ["alice"])
    join(bob, broker.url, "bob", "browser-test")
    wait_online(alice, ["alice", "bob"])
    wait_online(bob, ["alice", "bob"])
    wait_for_notice(alice, "bob joined")
    assert "alice joined" not in notices(bob)     # alice was there before bob came

    # Wide: the online list is a column beside the log. Narrow: it is folded
    # behind the "Online N" button until that is pressed.
    assert alice.find_element(By.ID, "users-panel").is_displayed()
    assert not alice.find_element(By.ID, "users-toggle").is_displayed()
    toggle = bob.find_element(By.ID, "users-toggle")
    assert toggle.is_displayed() and toggle.text == "Online 2"
    assert not bob.find_element(By.ID, "users-panel").is_displayed()
    toggle.click()
    assert bob.find_element(By.ID, "users-panel").is_displayed()
    assert toggle.get_attribute("aria-expanded") == "true"

    # Markup in a message must be shown as text, never interpreted.
    hello = "hello bob <b>not bold</b> & <img src=x onerror=alert(1)>"
    say(alice, hello)
    classes = wait_for_entry(alice, "alice", hello)
    assert "mine" in classes          # the sender sees its own message, marked
    assert "mine" not in wait_for_entry(bob, "alice", hello)
    live = [e for e in entries(bob) if e[2] == hello][0]
    assert live[3], "a live message shows its time"

    say(bob, "hi alice \u2014 \u00e7a va? \U0001F600")
    wait_for_entry(alice, "bob", "hi alice \u2014 \u00e7a va? \U0001F600")
    wait_for_entry(bob, "bob", "hi alice \u2014 \u00e7a va? \U0001F600")

    # A hostile client: its user name and its message are markup. Both
    # show up as text in the log and in the online list, and nothing runs.
    evil_name = "<img src=x onerror=window.pwned=1>"
    evil_text = "<script>window.pwned=2</script><b>bold?</b>"
    alice.execute_script("""
        var name = arguments[0], text = arguments[1];
        var ws = new WebSocket('ws://' + location.host + '/ws?user=' + encodeURIComponent(name));
        window.evilSocket = ws;
        ws.onopen = function () {
            ws.send(JSON.stringify({op: 'subscribe', channel: 'room:browser-test', id: 1}));
            ws.send(JSON.stringify({op: 'publish', channel: 'room:browser-test', id: 2,
                                    data: {message: text}}));
        };""", evil_name, evil_text)
    for d in (alice, bob):
        wait_for_entry(d, evil_name, evil_text)
        wait_online(d, ["alice", "bob", evil_name])
        wait_for_notice(d, evil_name + " joined")
    alice.execute_script("window.evilSocket.close(1000);")
    for d in (alice, bob):
        wait_online(d, ["alice", "bob"])
        wait_for_notice(d, evil_name + " left")
        assert d.find_elements(By.CSS_SELECTOR, "#log b, #log img, #log script, "
                                                "#users img, #users b") == []
        assert d.execute_script("return window.pwned === undefined")

    # Data that is not {"message": string} is shown as its JSON text: an API
    # publish (no sender), and a raw text frame from the broadcast route.
    answer = broker.api_publish("room:browser-test", '{"price": 1}')
    assert answer["seq"] > 0 and isinstance(answer["epoch"], str)
    alice.execute_script("""
        var ws = new WebSocket('ws://' + location.host + '/chat/browser-test?user=script');
        ws.onopen = function () {
            ws.send('plain text from a script');
            ws.close(1000);
        };""")
    for d in (alice, bob):
        assert "raw" in wait_for_entry(d, None, '{"price":1}')
        wait_for_entry(d, ANY, '"plain text from a script"')

    # Every resource of the page came from the broker itself.
    for d in (alice, bob):
        resources = d.execute_script(
            "return performance.getEntriesByType('resource').map(function (e) { return e.name; });")
        assert resources, "no resources recorded"
        assert all(r.startswith(broker.url) for r in resources), resources

    shot = os.environ.get("WSBROKER_SCREENSHOT")
    if shot:
        bob.save_screenshot(shot)
        alice.save_screenshot(os.path.splitext(shot)[0] + "-wide.png")


def test_late_joiner_sees_history_and_leaving_updates_the_list(broker, browser):
    alice = browser()
    bob = browser()
    join(alice, broker.url, "alice", "history")
    join(bob, broker.url, "bob", "history")
    said = [("alice", "first"), ("bob", "second <i>x</i>"), ("alice", "third")]
    for who, text in said:
        say(alice if who == "alice" else bob, text)
        wait_for_entry(alice, who, text)
        wait_for_entry(bob, who, text)

    # Carol comes later: the room's history is replayed, in order, once,
    # under an "earlier messages" divider and without times of its own.
    carol = browser(390, 760)
    join(carol, broker.url, "carol", "history")
    for who, text in said:
        assert "history" in wait_for_entry(carol, who, text)
    log = entries(carol)
    texts = [t for _, _, t, _ in log]
    assert texts.count("earlier messages") == 1
    at = texts.index("earlier messages")
    assert [(u, t) for _, u, t, _ in log[at + 1:at + 4]] == \
        [(who + ":", text) for who, text in said]
    assert all(time is None for _, _, _, time in log[at:at + 4])
    for _, text in said:
        assert count_entries(carol, text) == 1
    wait_online(carol, ["alice", "bob", "carol"])
    wait_online(alice, ["alice", "bob", "carol"])
    wait_for_notice(alice, "carol joined")

    say(bob, "fourth, live")
    assert "history" not in wait_for_entry(carol, "bob", "fourth, live")

    # A reload starts the page afresh: the history is there again, once.
    bob.refresh()
    join(bob, broker.url, "bob", "history", load=False)
    for who, text in said + [("bob", "fourth, live")]:
        wait_for_entry(bob, who, text)
        assert count_entries(bob, text) == 1

    # Leaving: carol changes rooms, bob closes his tab.
    carol.find_element(By.ID, "switch").click()
    wait_online(alice, ["alice", "bob"])
    wait_for_notice(alice, "carol left")
    open_page(bob, "about:blank")
    wait_online(alice, ["alice"])
    wait_for_notice(alice, "bob left")


def test_network_drop_and_resume(broker, browser):
    alice = browser()
    bob = browser(390, 760)
    join(alice, broker.url, "alice", "resume")
    join(bob, broker.url, "bob", "resume")
    say(alice, "before the drop")
    wait_for_entry(bob, "alice", "before the drop")

    # Bob's network goes away: the page drops its socket, says so, and waits
    # for the network instead of retrying into the void.
    set_offline(bob, True)
    wait(bob, lambda d: status_state(d) == "offline", "bob's page did not notice")
    wait_online(alice, ["alice"])
    wait_for_notice(alice, "bob left")

    missed = ["while bob was away 1", "while bob was away 2", "while bob was away 3"]
    for text in missed:
        say(alice, text)
        wait_for_entry(alice, "alice", text)
    broker.api_publish("room:resume", '{"message": "from the backend", "n": 4}')
    wait_for_entry(alice, None, "from the backend")

    # The network is back: the page reconnects at once and resumes after the
    # last message it showed, so each missed message appears exactly once.
    set_offline(bob, False)
    wait(bob, lambda d: status_state(d) == "connected", "bob did not reconnect")
    for text in missed:
        wait_for_entry(bob, "alice", text)
    wait_for_entry(bob, None, "from the backend")
    log = [t for _, _, t, _ in entries(bob)]
    for text in ["before the drop"] + missed + ["from the backend"]:
        assert log.count(text) == 1, (text, log)
    assert [t for t in log if t in missed] == missed
    assert "some messages may be missing" not in notices(bob)
    wait_online(bob, ["alice", "bob"])
    wait_online(alice, ["alice", "bob"])

    say(bob, "back again")
    wait_for_entry(alice, "bob", "back again")
    wait_for_entry(bob, "bob", "back again")
    assert count_entries(bob, "back again") == 1

    # The broker drops bob (DELETE /api/connections): the page tells him,
    # retries after its backoff, and resumes again without loss or repeat.
    status, body = api_request(broker, "DELETE", "/api/connections?user=bob")
    assert status == 200 and body == {"disconnected": 1}
    for text in ("published during the retry 1", "published during the retry 2"):
        broker.api_publish("room:resume", json.dumps({"message": text}))
    wait_for_notice(bob, "connection closed by the server (1008: disconnected by API)")
    wait(bob, lambda d: status_state(d) == "connected", "bob did not come back")
    for text in ("published during the retry 1", "published during the retry 2"):
        wait_for_entry(bob, None, text)
        assert count_entries(bob, text) == 1
    log = [t for _, _, t, _ in entries(bob)]
    for text in ["before the drop", "back again"] + missed:
        assert log.count(text) == 1, (text, log)
    assert "some messages may be missing" not in notices(bob)


def test_broker_restart_is_noticed_and_survived(broker, browser):
    alice = browser()
    join(alice, broker.url, "alice", "lobby")
    say(alice, "before the restart")
    wait_for_entry(alice, "alice", "before the restart")

    assert broker.stop() == 0
    # The broker says goodbye with close 1001; the page tells the user and
    # counts down to its next attempt.
    wait_for_notice(alice, "connection closed by the server (1001: server shutdown)")
    wait(alice, lambda d: status_state(d) == "disconnected"
         and "reconnecting in" in d.find_element(By.ID, "status").text,
         "no 'reconnecting in' status")

    # A new broker process is a new epoch: the page cannot know what it
    # missed, says so, and carries on with the new numbering.
    broker.start(broker.port)
    wait(alice, lambda d: status_state(d) == "connected", "alice did not reconnect")
    wait_for_notice(alice, "some messages may be missing")
    say(alice, "after the restart")
    wait_for_entry(alice, "alice", "after the restart")
    assert count_entries(alice, "after the restart") == 1
    assert count_entries(alice, "before the restart") == 1


def test_error_replies_are_shown_as_notices(broker, browser):
    alice = browser()
    join(alice, broker.url, "alice", "announcements")
    # room:announcements is publish = "api_only": the broker refuses the
    # page's publish with an error reply, shown as a notice; the connection
    # stays up and API messages still arrive.
    say(alice, "may I speak?")
    wait(alice, lambda d: any(n.startswith("error: forbidden") for n in notices(d)),
         "no forbidden notice")
    assert count_entries(alice, "may I speak?") == 0
    assert status_state(alice) == "connected"
    broker.api_publish("room:announcements", '{"message": "maintenance at noon"}')
    wait_for_entry(alice, None, "maintenance at noon")


def test_name_is_remembered_and_rooms_are_separate(broker, browser):
    alice = browser()
    bob = browser()
    join(alice, broker.url, "alice", "lobby")
    join(bob, broker.url, "bob", "lobby")

    # Reloading keeps the name (localStorage); the room defaults to lobby.
    bob.refresh()
    assert bob.find_element(By.ID, "name").get_attribute("value") == "bob"
    assert bob.find_element(By.ID, "room").get_attribute("value") == "lobby"

    bob.find_element(By.ID, "join-button").click()
    wait(bob, lambda d: status_state(d) == "connected", "bob did not reconnect")

    # Switching rooms: bob moves to "kitchen"; what he says there stays there.
    bob.find_element(By.ID, "switch").click()
    wait(bob, lambda d: d.find_element(By.ID, "join").is_displayed(), "join form not shown")
    room_input = bob.find_element(By.ID, "room")
    room_input.clear()
    room_input.send_keys("kitchen")
    bob.find_element(By.ID, "join-button").click()
    wait(bob, lambda d: status_state(d) == "connected", "bob did not join kitchen")
    assert bob.find_element(By.ID, "room-title").text == "#kitchen"
    wait_online(bob, ["bob"])
    wait_online(alice, ["alice"])

    say(bob, "only in the kitchen")
    wait_for_entry(bob, "bob", "only in the kitchen")
    say(alice, "only in the lobby")
    wait_for_entry(alice, "alice", "only in the lobby")
    assert count_entries(alice, "only in the kitchen") == 0
    assert count_entries(bob, "only in the lobby") == 0

    # An invalid room name is refused by the page before any connection.
    bob.find_element(By.ID, "switch").click()
    room_input = bob.find_element(By.ID, "room")
    room_input.clear()
    room_input.send_keys("no spaces/or slashes")
    bob.find_element(By.ID, "join-button").click()
    assert bob.find_element(By.ID, "join-error").text != ""
    assert status_state(bob) == "idle"


def test_chromium_negotiates_permessage_deflate(broker, browser):
    """Chromium offers permessage-deflate by default; the broker accepts it
    and a large message makes the round trip compressed both ways."""
    driver = browser()
    open_page(driver, broker.url)
    driver.set_script_timeout(WAIT)
    result = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const text = "compress me, ".repeat(2000);
        const ws = new WebSocket("ws://" + location.host + "/chat/deflate-check");
        ws.onopen = () => ws.send(text);
        ws.onmessage = (event) => {
            done({extensions: ws.extensions, same: event.data === text});
            ws.close();
        };
        ws.onerror = () => done({extensions: "error", same: false});
    """)
    assert result["extensions"].startswith("permessage-deflate"), result
    assert "server_no_context_takeover" in result["extensions"], result
    assert result["same"], result
