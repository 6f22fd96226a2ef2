/* wsbroker chat page: joins /chat/<room> on the broker that served this page.
 * Sends {"user": name, "message": text} as JSON text; shows whatever arrives,
 * JSON chat messages as "name: text", anything else as raw text. */
(function () {
  "use strict";

  var NAME_KEY = "wsbroker.chat.name";
  var ROOM_PATTERN = /^[A-Za-z0-9_.@-]{1,64}$/;
  var MAX_LOG_ENTRIES = 500;
  var RECONNECT_MIN = 1;    /* seconds */
  var RECONNECT_MAX = 30;   /* seconds */

  var $ = function (id) { return document.getElementById(id); };
  var ui = {
    status: $("status"),
    join: $("join"),
    name: $("name"),
    room: $("room"),
    joinError: $("join-error"),
    chat: $("chat"),
    roomTitle: $("room-title"),
    switchRoom: $("switch"),
    log: $("log"),
    send: $("send"),
    message: $("message"),
    sendButton: $("send-button")
  };

  var state = {
    name: "",
    room: "",
    socket: null,
    attempt: 0,          /* failed connects since the last open */
    retryTimer: null,
    countdownTimer: null
  };

  function setStatus(kind, text) {
    ui.status.dataset.state = kind;
    ui.status.textContent = text;
  }

  function storedName() {
    try { return window.localStorage.getItem(NAME_KEY) || ""; } catch (e) { return ""; }
  }

  function storeName(name) {
    try { window.localStorage.setItem(NAME_KEY, name); } catch (e) { /* private mode */ }
  }

  function socketUrl(room) {
    var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + window.location.host + "/chat/" + encodeURIComponent(room);
  }

  function timeNow() {
    return new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function nearBottom() {
    return ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 40;
  }

  /* Appends one entry. Every piece of received data goes in via textContent. */
  function addEntry(kind, user, text) {
    var follow = nearBottom();
    var item = document.createElement("li");
    item.className = "entry " + kind;

    var time = document.createElement("time");
    time.className = "time";
    time.textContent = timeNow();
    item.appendChild(time);

    if (user !== null) {
      var who = document.createElement("span");
      who.className = "user";
      who.textContent = user + ":";
      item.appendChild(who);
      item.appendChild(document.createTextNode(" "));
    }
    var body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    item.appendChild(body);

    ui.log.appendChild(item);
    while (ui.log.childElementCount > MAX_LOG_ENTRIES) {
      ui.log.removeChild(ui.log.firstElementChild);
    }
    if (follow) {
      ui.log.scrollTop = ui.log.scrollHeight;
    }
  }

  function render(data) {
    if (typeof data !== "string") {
      addEntry("raw", null, "[binary message, " + data.byteLength + " bytes]");
      return;
    }
    var parsed = null;
    try { parsed = JSON.parse(data); } catch (e) { parsed = null; }
    if (parsed !== null && typeof parsed === "object" && !Array.isArray(parsed) &&
        typeof parsed.user === "string" && typeof parsed.message === "string") {
      addEntry(parsed.user === state.name ? "msg mine" : "msg", parsed.user, parsed.message);
    } else {
      addEntry("raw", null, data);
    }
  }

  function clearTimers() {
    if (state.retryTimer !== null) { clearTimeout(state.retryTimer); state.retryTimer = null; }
    if (state.countdownTimer !== null) { clearInterval(state.countdownTimer); state.countdownTimer = null; }
  }

  function scheduleReconnect() {
    var delay = Math.min(RECONNECT_MAX, RECONNECT_MIN * Math.pow(2, state.attempt));
    /* a little jitter so a restarted broker is not hit by every tab at once */
    delay = Math.max(RECONNECT_MIN, Math.round(delay * (0.8 + Math.random() * 0.4)));
    state.attempt += 1;
    var left = delay;
    var show = function () {
      setStatus("disconnected", "disconnected \u2014 reconnecting in " + left + "s");
    };
    show();
    state.countdownTimer = setInterval(function () {
      left = Math.max(0, left - 1);
      show();
    }, 1000);
    state.retryTimer = setTimeout(function () {
      clearTimers();
      connect();
    }, delay * 1000);
  }

  function connect() {
    clearTimers();
    setStatus("connecting", "connecting to #" + state.room + "\u2026");
    var socket;
    try {
      socket = new WebSocket(socketUrl(state.room));
    } catch (e) {
      scheduleReconnect();
      return;
    }
    socket.binaryType = "arraybuffer";
    state.socket = socket;

    socket.onopen = function () {
      if (state.socket !== socket) { return; }
      state.attempt = 0;
      setStatus("connected", "connected to #" + state.room + " as " + state.name);
      ui.sendButton.disabled = false;
    };
    socket.onmessage = function (event) {
      if (state.socket !== socket) { return; }
      render(event.data);
    };
    socket.onclose = function (event) {
      if (state.socket !== socket) { return; }   /* closed on purpose */
      state.socket = null;
      ui.sendButton.disabled = true;
      if (event.code === 1001 || event.code === 1008 || event.code === 1009 || event.code === 1013) {
        addEntry("notice", null, "connection closed by the server (" + event.code +
                 (event.reason ? ": " + event.reason : "") + ")");
      }
      scheduleReconnect();
    };
  }

  function disconnect() {
    clearTimers();
    var socket = state.socket;
    state.socket = null;
    ui.sendButton.disabled = true;
    if (socket !== null) {
      socket.close(1000, "leaving room");
    }
  }

  function showJoin() {
    disconnect();
    setStatus("idle", "not connected");
    ui.chat.hidden = true;
    ui.join.hidden = false;
    ui.name.value = state.name || storedName();
    ui.room.value = state.room || ui.room.value || "lobby";
    (ui.name.value ? ui.room : ui.name).focus();
  }

  ui.join.addEventListener("submit", function (event) {
    event.preventDefault();
    var name = ui.name.value.trim();
    var room = ui.room.value.trim();
    if (name === "") {
      ui.joinError.textContent = "Please choose a display name.";
      ui.name.focus();
      return;
    }
    if (!ROOM_PATTERN.test(room)) {
      ui.joinError.textContent = "A room name is 1\u201364 letters, digits or _ . @ -";
      ui.room.focus();
      return;
    }
    ui.joinError.textContent = "";
    if (room !== state.room) {
      ui.log.textContent = "";
    }
    state.name = name;
    state.room = room;
    state.attempt = 0;
    storeName(name);
    ui.roomTitle.textContent = "#" + room;
    document.title = "#" + room + " \u2014 wsbroker chat";
    if (window.location.hash !== "#" + room) {
      history.replaceState(null, "", "#" + room);
    }
    ui.join.hidden = true;
    ui.chat.hidden = false;
    ui.message.focus();
    connect();
  });

  ui.send.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = ui.message.value;
    if (text.trim() === "" || state.socket === null ||
        state.socket.readyState !== WebSocket.OPEN) {
      return;
    }
    state.socket.send(JSON.stringify({ user: state.name, message: text }));
    ui.message.value = "";
    ui.message.focus();
  });

  ui.switchRoom.addEventListener("click", showJoin);

  /* A shared link like http://host:8080/#kitchen preselects the room. */
  var hashRoom = "";
  try { hashRoom = decodeURIComponent(window.location.hash.slice(1)); } catch (e) { hashRoom = ""; }
  if (ROOM_PATTERN.test(hashRoom)) {
    ui.room.value = hashRoom;
  }
  ui.name.value = storedName();
  (ui.name.value ? ui.room : ui.name).focus();
})();
