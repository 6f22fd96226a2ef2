/* wsbroker chat page. Speaks the JSON protocol of wsbroker-protocol(7) on
 * the pubsub route /ws of the broker that served it: one channel
 * "room:<room>" per room, with the room's held history replayed on join,
 * an online list kept from presence events, and a resume after every
 * reconnect that neither loses nor repeats a message.
 * Everything that came from the network goes into the page via textContent. */
(function () {
  "use strict";

  var NAME_KEY = "wsbroker.chat.name";
  var ROOM_PATTERN = /^[A-Za-z0-9_.@-]{1,64}$/;
  var CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;
  var NAME_MAX_BYTES = 64;         /* the broker refuses longer ?user= names */
  var MAX_LOG_ENTRIES = 500;
  var RECONNECT_MIN = 1;           /* seconds */
  var RECONNECT_MAX = 30;          /* seconds */
  var CLOSE_NOTICE_CODES = [1001, 1008, 1009, 1011, 1013];

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
    usersToggle: $("users-toggle"),
    usersPanel: $("users-panel"),
    users: $("users"),
    usersCount: $("users-count"),
    usersCountShort: $("users-count-short"),
    log: $("log"),
    send: $("send"),
    message: $("message"),
    sendButton: $("send-button")
  };

  var state = {
    name: "",
    room: "",
    channel: "",
    socket: null,
    subscribed: false,   /* the subscribe of this socket was answered ok */
    attempt: 0,          /* connects since the last successful subscribe */
    retryTimer: null,
    countdownTimer: null,
    nextId: 1,
    pending: {},         /* request id -> {op, text} awaiting a reply */
    /* Resume position in the current room; kept across reconnects. */
    lastSeq: 0,          /* highest seq shown */
    epoch: null,         /* epoch from the last subscribe ok */
    everSubscribed: false,
    replayUntil: 0,      /* first join: messages up to this seq are history */
    historyDivider: false,
    users: []            /* sorted user names in the room */
  };

  /* ---- small helpers ------------------------------------------------- */

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

  function utf8Length(text) {
    if (typeof TextEncoder === "function") {
      return new TextEncoder().encode(text).length;
    }
    return unescape(encodeURIComponent(text)).length;
  }

  function socketUrl() {
    var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + window.location.host + "/ws?user=" + encodeURIComponent(state.name);
  }

  function timeNow() {
    return new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function isPlainObject(value) {
    return value !== null && typeof value === "object" && !Array.isArray(value);
  }

  /* ---- the message log ----------------------------------------------- */

  function nearBottom() {
    return ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 40;
  }

  /* Appends one entry: kind is a class list ("msg", "msg mine", "raw",
   * "notice", "divider"), user null for none, time false for none. */
  function addEntry(kind, user, text, time) {
    var follow = nearBottom();
    var item = document.createElement("li");
    item.className = "entry " + kind;

    if (time !== false) {
      var stamp = document.createElement("time");
      stamp.className = "time";
      stamp.textContent = timeNow();
      item.appendChild(stamp);
    }
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

  function notice(text) {
    addEntry("notice", null, text, true);
  }

  function base64Length(text) {
    try { return window.atob(text).length; } catch (e) { return 0; }
  }

  /* {"op":"message","channel":C,"seq":N,"data":...,"from":U} */
  function showMessage(event) {
    var from = typeof event.from === "string" ? event.from : null;
    /* On the first join, what the subscribe reply's seq covers is history:
     * sent before this page was here, so it has no time of its own. */
    var history = typeof event.seq === "number" && event.seq <= state.replayUntil;
    if (history && !state.historyDivider) {
      addEntry("divider", null, "earlier messages", false);
      state.historyDivider = true;
    }
    var time = history ? false : true;
    var extra = history ? " history" : "";
    var data = event.data;
    if (isPlainObject(data) && typeof data.message === "string") {
      addEntry((from !== null && from === state.name ? "msg mine" : "msg") + extra,
               from, data.message, time);
    } else if (typeof event.data_base64 === "string") {
      addEntry("raw" + extra, from,
               "[binary message, " + base64Length(event.data_base64) + " bytes]", time);
    } else {
      addEntry("raw" + extra, from, JSON.stringify(data === undefined ? null : data), time);
    }
  }

  /* ---- who is online ------------------------------------------------- */

  function renderUsers() {
    ui.users.textContent = "";
    state.users.forEach(function (user) {
      var item = document.createElement("li");
      item.className = user === state.name ? "me" : "";
      item.textContent = user;
      if (user === state.name) {
        var you = document.createElement("span");
        you.className = "you";
        you.textContent = " (you)";
        item.appendChild(you);
      }
      ui.users.appendChild(item);
    });
    var count = String(state.users.length);
    ui.usersCount.textContent = count;
    ui.usersCountShort.textContent = count;
  }

  function setUsers(list) {
    var seen = {};
    state.users = list.filter(function (user) {
      if (typeof user !== "string" || seen.hasOwnProperty(user)) { return false; }
      seen[user] = true;
      return true;
    }).sort();
    renderUsers();
  }

  function setUsersStale(stale) {
    ui.usersPanel.classList.toggle("stale", stale);
  }

  function userJoined(user) {
    if (state.users.indexOf(user) < 0) {
      setUsers(state.users.concat([user]));
    }
    if (user !== state.name) { notice(user + " joined"); }
  }

  function userLeft(user) {
    var at = state.users.indexOf(user);
    if (at >= 0) {
      var rest = state.users.slice();
      rest.splice(at, 1);
      setUsers(rest);
    }
    if (user !== state.name) { notice(user + " left"); }
  }

  /* ---- requests ------------------------------------------------------ */

  function request(body, info) {
    var socket = state.socket;
    if (socket === null || socket.readyState !== WebSocket.OPEN) { return false; }
    var id = state.nextId++;
    body.id = id;
    state.pending[id] = info;
    socket.send(JSON.stringify(body));
    return true;
  }

  function subscribe() {
    /* since 0 on the first join replays what the room holds; afterwards,
     * resume after the last message shown, in the epoch it belongs to. */
    var body = { op: "subscribe", channel: state.channel, since: state.lastSeq };
    if (state.epoch !== null) { body.epoch = state.epoch; }
    request(body, { op: "subscribe" });
  }

  function onSubscribed(reply) {
    var resumed = state.everSubscribed;
    if (typeof reply.epoch === "string") {
      if (state.epoch !== null && reply.epoch !== state.epoch) {
        state.lastSeq = 0;      /* the broker restarted: seqs start again */
        state.replayUntil = 0;
      }
      state.epoch = reply.epoch;
    }
    if (!resumed) {
      state.replayUntil = typeof reply.seq === "number" ? reply.seq : 0;
    }
    state.everSubscribed = true;
    state.subscribed = true;
    state.attempt = 0;
    if (resumed && reply.recovered === false) {
      notice("some messages may be missing");
    }
    setStatus("connected", "connected to #" + state.room + " as " + state.name);
    ui.sendButton.disabled = false;
    request({ op: "presence", channel: state.channel }, { op: "presence" });
  }

  function onReply(reply) {
    var info = null;
    if (reply.id !== undefined && state.pending.hasOwnProperty(reply.id)) {
      info = state.pending[reply.id];
      delete state.pending[reply.id];
    }
    if (reply.op === "error") {
      var what = typeof reply.code === "string" ? reply.code : "error";
      var text = typeof reply.message === "string" ? reply.message : "";
      notice("error: " + what + (text ? " \u2014 " + text : ""));
      if (info !== null && info.op === "subscribe") {
        setStatus("error", "could not join #" + state.room + " (" + what + ")");
      } else if (info !== null && info.op === "presence") {
        setUsersStale(true);
      }
      return;
    }
    if (info === null) { return; }
    if (info.op === "subscribe") {
      onSubscribed(reply);
    } else if (info.op === "presence") {
      if (Array.isArray(reply.users)) {
        setUsers(reply.users);
        setUsersStale(false);
      }
    }
  }

  function onEvent(event) {
    if (!isPlainObject(event) || typeof event.op !== "string") { return; }
    if (event.op === "ok" || event.op === "error") {
      onReply(event);
      return;
    }
    if (event.channel !== state.channel) { return; }
    if (event.op === "message") {
      if (typeof event.seq === "number") {
        if (event.seq <= state.lastSeq) { return; }   /* already shown */
        state.lastSeq = event.seq;
      }
      showMessage(event);
    } else if (event.op === "join" && typeof event.user === "string") {
      userJoined(event.user);
    } else if (event.op === "leave" && typeof event.user === "string") {
      userLeft(event.user);
    }
  }

  /* ---- the connection ------------------------------------------------ */

  function clearTimers() {
    if (state.retryTimer !== null) { clearTimeout(state.retryTimer); state.retryTimer = null; }
    if (state.countdownTimer !== null) { clearInterval(state.countdownTimer); state.countdownTimer = null; }
  }

  function scheduleReconnect() {
    clearTimers();
    if (navigator.onLine === false) {
      setStatus("offline", "offline \u2014 waiting for the network");
      return;            /* the "online" event reconnects */
    }
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

  /* The socket is gone (closed by either side or by the network). */
  function lost() {
    state.socket = null;
    state.subscribed = false;
    ui.sendButton.disabled = true;
    setUsersStale(true);
    Object.keys(state.pending).forEach(function (id) {
      var info = state.pending[id];
      if (info.op === "publish") {
        notice("not confirmed, may not have been sent: " + info.text);
      }
    });
    state.pending = {};
  }

  function connect() {
    clearTimers();
    setStatus("connecting", "connecting to #" + state.room + "\u2026");
    var socket;
    try {
      socket = new WebSocket(socketUrl());
    } catch (e) {
      scheduleReconnect();
      return;
    }
    state.socket = socket;
    state.subscribed = false;
    state.pending = {};

    socket.onopen = function () {
      if (state.socket !== socket) { return; }
      setStatus("connecting", "joining #" + state.room + "\u2026");
      subscribe();
    };
    socket.onmessage = function (event) {
      if (state.socket !== socket) { return; }
      if (typeof event.data !== "string") { return; }   /* not part of the protocol */
      var parsed;
      try { parsed = JSON.parse(event.data); } catch (e) { return; }
      onEvent(parsed);
    };
    socket.onclose = function (event) {
      if (state.socket !== socket) { return; }   /* closed on purpose */
      lost();
      if (CLOSE_NOTICE_CODES.indexOf(event.code) >= 0) {
        notice("connection closed by the server (" + event.code +
               (event.reason ? ": " + event.reason : "") + ")");
      }
      scheduleReconnect();
    };
  }

  function disconnect() {
    clearTimers();
    var socket = state.socket;
    if (socket !== null) {
      state.socket = null;
      socket.close(1000, "leaving room");
    }
    lost();
  }

  function resetRoom(room) {
    state.room = room;
    state.channel = "room:" + room;
    state.lastSeq = 0;
    state.epoch = null;
    state.everSubscribed = false;
    state.replayUntil = 0;
    state.historyDivider = false;
    ui.log.textContent = "";
    setUsers([]);
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

  function nameProblem(name) {
    if (name === "") { return "Please choose a display name."; }
    if (CONTROL_CHARACTER.test(name)) { return "A display name cannot contain control characters."; }
    if (utf8Length(name) > NAME_MAX_BYTES) { return "That display name is too long."; }
    return "";
  }

  ui.join.addEventListener("submit", function (event) {
    event.preventDefault();
    var name = ui.name.value.trim();
    var room = ui.room.value.trim();
    var problem = nameProblem(name);
    if (problem !== "") {
      ui.joinError.textContent = problem;
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
      resetRoom(room);     /* the same room again resumes where it stopped */
    }
    state.name = name;
    state.attempt = 0;
    storeName(name);
    renderUsers();
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
    if (text.trim() === "" || !state.subscribed) { return; }
    if (request({ op: "publish", channel: state.channel, data: { message: text } },
                { op: "publish", text: text })) {
      ui.message.value = "";
    }
    ui.message.focus();
  });

  ui.switchRoom.addEventListener("click", showJoin);

  ui.usersToggle.addEventListener("click", function () {
    var open = !ui.chat.classList.contains("users-open");
    ui.chat.classList.toggle("users-open", open);
    ui.usersToggle.setAttribute("aria-expanded", open ? "true" : "false");
  });

  /* Without a network the socket is dead even if no close has arrived yet:
   * drop it, and come back as soon as the network does. */
  window.addEventListener("offline", function () {
    if (state.socket === null && state.retryTimer === null) { return; }
    var socket = state.socket;
    clearTimers();
    if (socket !== null) {
      state.socket = null;
      try { socket.close(1000, "offline"); } catch (e) { /* already closing */ }
      lost();
    }
    setStatus("offline", "offline \u2014 waiting for the network");
  });

  window.addEventListener("online", function () {
    if (ui.chat.hidden || state.socket !== null) { return; }
    state.attempt = 0;
    connect();
  });

  /* Leaving the page leaves the room, even when the browser keeps the page
   * in its back/forward cache; coming back to it resumes where it stopped. */
  window.addEventListener("pagehide", function () {
    var socket = state.socket;
    clearTimers();
    if (socket !== null) {
      state.socket = null;
      try { socket.close(1000, "page closed"); } catch (e) { /* already closing */ }
      lost();
    }
  });

  window.addEventListener("pageshow", function (event) {
    if (event.persisted && !ui.chat.hidden && state.socket === null) {
      state.attempt = 0;
      connect();
    }
  });

  /* A shared link like http://host:8080/#kitchen preselects the room. */
  var hashRoom = "";
  try { hashRoom = decodeURIComponent(window.location.hash.slice(1)); } catch (e) { hashRoom = ""; }
  if (ROOM_PATTERN.test(hashRoom)) {
    ui.room.value = hashRoom;
  }
  ui.name.value = storedName();
  (ui.name.value ? ui.room : ui.name).focus();
})();
