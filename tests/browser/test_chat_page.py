"""The built-in chat page, in real browsers, against the real daemon.

Two headless Chromium sessions join the same room through www/index.html
(served by the broker from http.static_root) and talk over the broadcast
route /chat/:room.
"""
import os

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

WAIT = 10  # seconds, the longest any single step may take


def wait(driver, condition, message):
    return WebDriverWait(driver, WAIT, poll_frequency=0.05).until(condition, message)


def status_state(driver):
    return driver.find_element(By.ID, "status").get_attribute("data-state")


def join(driver, url, name, room):
    driver.get(url)
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
    """The message log as (class list, user, text) triples."""
    return driver.execute_script("""
        return Array.from(document.querySelectorAll('#log > li')).map(function (li) {
            var user = li.querySelector('.user');
            return [li.className, user ? user.textContent : null,
                    li.querySelector('.text').textContent];
        });""")


def wait_for_entry(driver, user, text):
    def seen(d):
        for classes, u, t in entries(d):
            if t == text and (u == (user + ":") if user is not None else u is None):
                return classes
        return False
    return wait(driver, seen, f"never saw {user!r}: {text!r}")


def test_two_browsers_chat_in_one_room(broker, browser):
    alice = browser(1000, 700)
    bob = browser(390, 760)          # a phone-sized window
    join(alice, broker.url, "alice", "browser-test")
    join(bob, broker.url, "bob", "browser-test")

    # Markup in a message must be shown as text, never interpreted.
    hello = "hello bob <b>not bold</b> & <img src=x onerror=alert(1)>"
    say(alice, hello)
    classes = wait_for_entry(alice, "alice", hello)
    assert "mine" in classes          # the sender sees its own message, marked
    assert "mine" not in wait_for_entry(bob, "alice", hello)
    for d in (alice, bob):
        assert d.find_elements(By.CSS_SELECTOR, "#log b, #log img") == []

    say(bob, "hi alice \u2014 \u00e7a va? \U0001F600")
    wait_for_entry(alice, "bob", "hi alice \u2014 \u00e7a va? \U0001F600")
    wait_for_entry(bob, "bob", "hi alice \u2014 \u00e7a va? \U0001F600")

    # A client that is not the page sends plain text (and JSON without the
    # chat fields): the page shows the raw text as it arrived.
    alice.execute_script("""
        var ws = new WebSocket('ws://' + location.host + '/chat/browser-test');
        ws.onopen = function () {
            ws.send('plain text from a script');
            ws.send('{"op":"ping"}');
            ws.close(1000);
        };""")
    for d in (alice, bob):
        wait_for_entry(d, None, "plain text from a script")
        wait_for_entry(d, None, '{"op":"ping"}')

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

    say(bob, "only in the kitchen")
    wait_for_entry(bob, "bob", "only in the kitchen")
    say(alice, "only in the lobby")
    wait_for_entry(alice, "alice", "only in the lobby")
    assert [e for e in entries(alice) if e[2] == "only in the kitchen"] == []
    assert [e for e in entries(bob) if e[2] == "only in the lobby"] == []

    # An invalid room name is refused by the page before any connection.
    bob.find_element(By.ID, "switch").click()
    room_input = bob.find_element(By.ID, "room")
    room_input.clear()
    room_input.send_keys("no spaces/or slashes")
    bob.find_element(By.ID, "join-button").click()
    assert bob.find_element(By.ID, "join-error").text != ""
    assert status_state(bob) == "idle"


def test_shutdown_is_shown_and_page_retries(broker, browser):
    alice = browser()
    join(alice, broker.url, "alice", "lobby")

    assert broker.stop() == 0
    # The broker says goodbye with close 1001; the page tells the user and
    # counts down to its next attempt.
    wait(alice, lambda d: any(u is None and t.startswith("connection closed by the server (1001")
                              for _, u, t in entries(d)),
         "no close 1001 notice")
    wait(alice, lambda d: status_state(d) == "disconnected"
         and "reconnecting in" in d.find_element(By.ID, "status").text,
         "no 'reconnecting in' status")
