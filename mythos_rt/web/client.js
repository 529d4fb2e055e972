// The bundled web client (docs/WEB_CLIENT.md). Plain JavaScript, no build step, no CDN.
// Everything that comes from the server is put on the page with textContent, never as HTML.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const meta = (name) => {
    const tag = document.querySelector(`meta[name="${name}"]`);
    const value = tag ? tag.content : "";
    return value.startsWith("__") ? "" : value;  // an unfilled placeholder (page opened as a file)
  };

  // --- where the game is ------------------------------------------------------------------
  // PUBLIC_URL wins. Otherwise a page opened on the ops port talks to the game port of the same
  // host; a page served under any other port (a TLS proxy on 443, say) talks to its own origin,
  // where the proxy is expected to pass /v1 on to the game port.
  function gameBase() {
    const publicUrl = meta("mythos-public-url").replace(/\/+$/, "");
    if (publicUrl) return publicUrl;
    const pagePort = location.port || (location.protocol === "https:" ? "443" : "80");
    const gamePort = meta("mythos-game-port");
    if (gamePort && pagePort === meta("mythos-ops-port")) {
      return `${location.protocol}//${location.hostname}:${gamePort}`;
    }
    return location.origin;
  }
  const BASE = gameBase();
  const API = `${BASE}/v1`;
  const WS_URL = `${BASE.replace(/^http/, "ws")}/v1/api/ws`;

  const PING_EVERY_MS = 60_000;           // the server drops a socket silent for 300 s
  const REFRESH_BEFORE_EXP_MS = 120_000;  // ask for a new token this long before exp
  const MAX_LOG_LINES = 2000;
  const MAX_HISTORY = 100;
  const REQUEST_TTL_MS = 60_000;           // section 11: requests expire after 60 s
  // Close codes after which trying again cannot help (section 15): back to the sign-in form.
  const FINAL_CLOSES = {
    1000: "You have left the game.",
    4000: "This game was taken over by a newer session (another tab or device).",
    4401: "Your sign-in is no longer valid. Please sign in again.",
    4403: "The server refused this page.",
    4404: "That character does not exist.",
    4409: "That session has ended. Please sign in again.",
  };

  // --- state: one owner, this closure -------------------------------------------------------
  const game = {
    token: "",           // what the socket authenticated with, or refreshed to: the CSRF token
    characterId: null,
    sessionId: null,     // one per sign-in, reused by every reconnect so resume works
    socket: null,
    lastSeq: 0,          // the highest sequence_number shown: later frames at or below it are dropped
    retries: 0,
    retryTimer: null,
    pingTimer: null,
    refreshTimer: null,
    refreshing: false,
    myName: "",
    history: [],
    historyAt: 0,
  };

  // --- the log ------------------------------------------------------------------------------
  const logEl = $("log");
  const jumpEl = $("jump");

  function atBottom() {
    return logEl.scrollHeight - logEl.scrollTop - logEl.clientHeight < 30;
  }

  // Whether the view follows new lines: only while the reader is at the bottom. Kept from the
  // reader's own scrolling, so a panel that appears and shrinks the log does not unstick it.
  let stick = true;

  function toBottom() {
    logEl.scrollTop = logEl.scrollHeight;
    stick = true;
    jumpEl.hidden = true;
  }

  // Append a line; follow it only if the reader was already at the bottom.
  function show(text, kind) {
    if (text === null || text === undefined || text === "") return;
    const line = document.createElement("div");
    line.className = `line ${kind}`;
    line.textContent = String(text);
    logEl.appendChild(line);
    while (logEl.childElementCount > MAX_LOG_LINES) logEl.firstElementChild.remove();
    if (stick) toBottom();
    else jumpEl.hidden = false;
  }
  logEl.addEventListener("scroll", () => {
    stick = atBottom();
    if (stick) jumpEl.hidden = true;
  });
  new ResizeObserver(() => { if (stick) toBottom(); }).observe(logEl);
  jumpEl.addEventListener("click", toBottom);

  function setStatus(state, text) {
    const el = $("status");
    el.dataset.state = state;
    el.textContent = text;
  }

  // --- panels -------------------------------------------------------------------------------
  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }

  function element(tag, text, className) {
    const el = document.createElement(tag);
    if (text !== undefined) el.textContent = text;
    if (className) el.className = className;
    return el;
  }

  function showRoom(room) {
    if (!room || typeof room !== "object") return;
    $("room-name").textContent = room.name || "";
    const where = [room.zone, room.sub_zone || room.subzone].filter(Boolean).join(" · ");
    $("room-zone").textContent = where.replace(/_/g, " ");
    $("room-description").textContent = room.description || "";
    const exits = $("exits");
    clear(exits);
    const directions = Object.keys(room.exits || {});
    if (directions.length === 0) exits.appendChild(element("span", "none", "empty"));
    for (const direction of directions) {
      const button = element("button", direction);
      button.type = "button";
      button.dataset.direction = direction;
      button.addEventListener("click", () => runLine(`go ${direction}`));
      exits.appendChild(button);
    }
  }

  // Occupant entries are names, or "Name (linkdead)" / "Name (warded)" (section 12).
  function showOccupants(names) {
    if (!Array.isArray(names)) return;
    const list = $("occupants");
    clear(list);
    for (const entry of names) {
      const match = /^(.*) \((linkdead|warded)\)$/.exec(String(entry));
      const item = element("li", match ? match[1] : String(entry));
      if (match) {
        item.dataset.mark = match[2];
        item.appendChild(element("span", match[2], `mark ${match[2]}`));
      }
      list.appendChild(item);
    }
  }

  function showParty(data) {
    const panel = $("party");
    clear(panel);
    const members = Array.isArray(data && data.members) ? data.members : [];
    if (!data || data.change === "disbanded" || !members.includes(game.myName)) {
      panel.appendChild(element("p", "You travel alone.", "empty"));
      return;
    }
    panel.appendChild(element("p", `Led by ${data.leader}`));
    const list = element("ul");
    for (const member of members) list.appendChild(element("li", member));
    panel.appendChild(list);
  }

  function showFollowing(following) {
    const el = $("following");
    const name = following && following.target_name;
    el.textContent = name ? `You follow ${name}.` : "Nobody.";
    el.className = name ? "" : "empty";
  }

  // A follow request or party invite as a prompt with Accept and Decline.
  function addPrompt(text, answer) {
    const list = $("prompts");
    const empty = list.querySelector(".empty");
    if (empty) empty.remove();
    const item = element("li", undefined, "prompt");
    item.appendChild(element("p", text));
    const buttons = [];
    const settle = (accept) => {
      answer(accept);
      item.classList.add("answered");
      for (const button of buttons) button.disabled = true;
      setTimeout(() => removePrompt(item), 3000);
    };
    for (const [label, accept] of [["Accept", true], ["Decline", false]]) {
      const button = element("button", label, accept ? "accept" : "decline");
      button.type = "button";
      button.addEventListener("click", () => settle(accept));
      buttons.push(button);
      item.appendChild(button);
    }
    list.appendChild(item);
    setTimeout(() => {
      if (item.classList.contains("answered")) return;
      item.classList.add("expired");
      for (const button of buttons) button.disabled = true;
      setTimeout(() => removePrompt(item), 3000);
    }, REQUEST_TTL_MS);
  }

  function removePrompt(item) {
    const list = $("prompts");
    item.remove();
    if (!list.querySelector(".prompt")) {
      list.appendChild(element("li", "Nobody is asking anything of you.", "empty"));
    }
  }

  // --- events as text ----------------------------------------------------------------------
  const timeOf = (iso) => {
    const when = new Date(iso);
    return Number.isNaN(when.getTime()) ? String(iso) : when.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
  };

  const PARTY_CHANGES = {
    created: (d) => `A party forms around ${d.leader}.`,
    joined: (d) => `The party: ${d.members.join(", ")} (led by ${d.leader}).`,
    left: (d) => `Someone has left the party. It is now ${d.members.join(", ")}.`,
    kicked: (d) => `The party is now ${d.members.join(", ")}.`,
    disbanded: () => "The party has disbanded.",
  };

  // Each event type: what it does to the panels, and the line (and its kind) for the log.
  const EVENTS = {
    game_state(d) {
      // A fresh start (not a resume): requests died with the old socket (section 11), and a
      // party lives no longer than the presence, so the panels start empty again.
      game.myName = (d.player && d.player.name) || game.myName;
      showRoom(d.room);
      showOccupants(d.occupants);
      showFollowing(d.following);
      showParty(null);
      for (const prompt of document.querySelectorAll("#prompts .prompt")) removePrompt(prompt);
      const lines = [[`You are ${game.myName}.`, "kind-notice"]];
      if (d.room) lines.push([d.room.name, "kind-room-title"], [d.room.description, "kind-room"]);
      if (d.login_grace_period_active) {
        const seconds = Math.ceil(Number(d.login_grace_period_remaining) || 0);
        lines.push([`A protective ward surrounds you for ${seconds} seconds.`, "kind-notice"]);
      }
      return lines;
    },
    room_update(d) { showRoom(d.room); showOccupants(d.occupants); return null; },
    room_state(d) {
      showRoom(d.room);
      showOccupants(d.occupants);
      return d.room ? [[d.room.name, "kind-room-title"], [d.room.description, "kind-room"]] : null;
    },
    room_occupants(d) { showOccupants(d.occupants); return null; },
    chat_message(d) { return [[d.message, `chan-${d.channel}`]]; },
    player_entered(d) { return [[d.message || `${d.player_name} enters the room.`, "kind-notice"]]; },
    player_left(d) { return [[d.message || `${d.player_name} leaves the room.`, "kind-notice"]]; },
    player_entered_game(d) { return [[`${d.player_name} has entered the game.`, "kind-notice"]]; },
    player_left_game(d) { return [[`${d.player_name} has left the game.`, "kind-notice"]]; },
    follow_request(d) {
      addPrompt(`${d.requestor_name} asks to follow you.`, (accept) =>
        sendFrame({type: "follow_response", data: {request_id: d.request_id, accept}}));
      return [[`${d.requestor_name} asks to follow you (see Requests, or type accept / decline).`, "kind-prompt"]];
    },
    follow_state(d) { showFollowing(d.following); return null; },  // the reply already says it
    party_invite(d) {
      addPrompt(`${d.inviter_name} invites you to their party.`, (accept) =>
        sendFrame({type: "party_invite_response", data: {invite_id: d.invite_id, accept}}));
      return [[`${d.inviter_name} invites you to their party (see Requests, or type accept / decline).`, "kind-prompt"]];
    },
    party_update(d) {
      showParty(d);
      const describe = PARTY_CHANGES[d.change];
      return describe ? [[describe(d), "kind-party"]] : null;
    },
    command_response(d) {
      if (d.room_state) showRoom(d.room_state.room || d.room_state);
      return [[d.result, "kind-response"]];
    },
    welcome(d) {
      game.retries = 0;
      setStatus("connected", `connected as ${game.myName || "a guest"}`);
      if (d.resumed) {
        const count = Number(d.replayed) || 0;
        return [[`Reconnected. ${count} missed ${count === 1 ? "message" : "messages"} caught up.`, "kind-system"]];
      }
      return [["You are in Arkham. Type help for the commands.", "kind-system"]];
    },
    token_expiring(d) {
      refreshToken();
      return [[`Your sign-in runs out at ${timeOf(d.expires_at)}; renewing it.`, "kind-notice"]];
    },
    token_refreshed(d) { return [[`Sign-in renewed until ${timeOf(d.expires_at)}.`, "kind-notice"]]; },
    intentional_disconnect(d) { return [[d.message, "kind-system"]]; },
    shutdown_notification(d) { return [[d.message, "kind-system"]]; },
    shutdown_cancelled(d) { return [[d.message || "The server shutdown was cancelled.", "kind-system"]]; },
    game_tick(d) {
      if (d.mythos_clock) $("clock").textContent = [d.mythos_clock, d.daypart].filter(Boolean).join(", ");
      return null;
    },
    pong() { return null; },
  };

  // Something this page does not know: its name and its plain values, never JSON.
  function fallback(type, data) {
    const words = String(type || "message").replace(/_/g, " ");
    const parts = [];
    for (const [key, value] of Object.entries(data || {})) {
      if (["string", "number", "boolean"].includes(typeof value)) parts.push(`${key.replace(/_/g, " ")}: ${value}`);
    }
    return [[`(${words}) ${parts.join("; ")}`.trim(), "kind-notice"]];
  }

  function describeError(frame) {
    const text = frame.user_friendly || frame.message || "Something went wrong.";
    const detail = frame.message && frame.message !== text ? ` (${frame.message})` : "";
    return [[`${text}${detail}`, "kind-error"]];
  }

  function receive(raw) {
    let frame;
    try { frame = JSON.parse(raw); } catch { show("The server sent something unreadable.", "kind-error"); return; }
    if (!frame || typeof frame !== "object") return;
    if (frame.type === "error") { describeError(frame).forEach(([t, k]) => show(t, k)); return; }
    const seq = Number(frame.sequence_number);
    // A fresh connect burst starts a new count: sequence numbers are per server instance, and
    // the reconnect may have reached another one (a resume never starts with game_state).
    if (frame.event_type === "game_state") game.lastSeq = 0;
    if (Number.isFinite(seq) && seq > 0) {
      if (seq <= game.lastSeq) return;  // already shown (a resume overlapping a live frame)
      game.lastSeq = seq;
    }
    const data = frame.data && typeof frame.data === "object" ? frame.data : {};
    const handler = EVENTS[frame.event_type];
    let lines;
    try {
      lines = handler ? handler(data) : fallback(frame.event_type, data);
    } catch {
      lines = fallback(frame.event_type, data);  // a payload of an unexpected shape
    }
    for (const [text, kind] of lines || []) show(text, kind);
  }

  // --- the socket ---------------------------------------------------------------------------
  function sendFrame(inner) {
    const ws = game.socket;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      show("Not connected: that was not sent. Reconnecting…", "kind-error");
      return false;
    }
    inner.timestamp = new Date().toISOString();
    ws.send(JSON.stringify({message: JSON.stringify(inner), timestamp: Date.now(), csrfToken: game.token}));
    return true;
  }

  function connect() {
    // One socket per tab: a second click while one is opening or open does nothing.
    const current = game.socket;
    if (current && (current.readyState === WebSocket.CONNECTING || current.readyState === WebSocket.OPEN)) return;
    clearTimeout(game.retryTimer);
    const query = new URLSearchParams({session_id: game.sessionId});
    if (game.characterId) query.set("character_id", game.characterId);
    if (game.lastSeq > 0) query.set("resume_from", String(game.lastSeq));
    setStatus("connecting", game.retries ? "reconnecting…" : "connecting…");
    let ws;
    try {
      ws = new WebSocket(`${WS_URL}?${query}`, ["bearer", game.token]);
    } catch (err) {
      signedOut(`Cannot open a connection: ${err.message}`);
      return;
    }
    game.socket = ws;
    ws.onopen = () => {
      $("signin").hidden = true;
      $("game").hidden = false;
      $("leave").hidden = false;
      $("line").focus();
      clearInterval(game.pingTimer);
      game.pingTimer = setInterval(() => {
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({type: "ping", csrfToken: game.token}));
      }, PING_EVERY_MS);
    };
    ws.onmessage = (event) => { if (ws === game.socket) receive(event.data); };
    ws.onclose = (event) => { if (ws === game.socket) closed(event); };
  }

  function closed(event) {
    clearInterval(game.pingTimer);
    game.socket = null;
    const final = FINAL_CLOSES[event.code];
    if (final) {
      show(final, event.code === 1000 ? "kind-system" : "kind-error");
      signedOut(final);
      return;
    }
    // Anything else (a restart, a dropped network, 1013 too slow, 4429 busy) is worth retrying,
    // with a growing pause; the next socket asks to resume after the last frame shown.
    const delay = Math.min(30_000, 1000 * 2 ** game.retries) * (0.75 + Math.random() / 4);
    if (game.retries === 0) {  // later failed attempts only update the status
      const why = event.reason ? `: ${event.reason}` : "";
      show(`The connection was lost${why}. Reconnecting…`, "kind-system");
    }
    game.retries += 1;
    setStatus("reconnecting", `reconnecting (attempt ${game.retries})`);
    game.retryTimer = setTimeout(connect, delay);
  }

  function signedOut(message) {
    clearTimeout(game.retryTimer);
    clearTimeout(game.refreshTimer);
    clearInterval(game.pingTimer);
    game.token = "";
    setStatus("signed-out", "not connected");
    $("signin-error").textContent = message || "";
    $("signin").hidden = false;
    $("leave").hidden = true;
    $("login-button").disabled = false;
    $("connect").disabled = false;
  }

  // --- tokens ---------------------------------------------------------------------------------
  function expiryOf(token) {
    try {
      const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return Number(JSON.parse(atob(payload)).exp) * 1000 || 0;
    } catch { return 0; }
  }

  function scheduleRefresh() {
    clearTimeout(game.refreshTimer);
    const exp = expiryOf(game.token);
    if (!exp) return;
    const wait = Math.max(5_000, exp - Date.now() - REFRESH_BEFORE_EXP_MS);
    game.refreshTimer = setTimeout(refreshToken, wait);
  }

  // A new token over HTTP, handed to the open socket as refresh_token (section 13). The server
  // handles frames in order and accepts both tokens afterwards, so the next frame may carry it.
  async function refreshToken() {
    if (game.refreshing || !game.token) return;
    game.refreshing = true;
    try {
      const answer = await api("POST", "/auth/refresh", null, game.token);
      if (sendFrame({type: "refresh_token", data: {token: answer.access_token}})) {
        game.token = answer.access_token;
        scheduleRefresh();
      }
    } catch (err) {
      show(`Could not renew the sign-in (${err.message}); you may need to sign in again.`, "kind-error");
    } finally {
      game.refreshing = false;
    }
  }

  async function api(method, path, body, bearer) {
    const headers = {"Content-Type": "application/json"};
    if (bearer) headers.Authorization = `Bearer ${bearer}`;
    const response = await fetch(`${API}${path}`, {method, headers, body: body ? JSON.stringify(body) : undefined});
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(typeof data.detail === "string" ? data.detail : `HTTP ${response.status}`);
    return data;
  }

  function newSessionId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function start(token, characterId) {
    game.token = token;
    game.characterId = characterId;
    game.sessionId = newSessionId();
    game.lastSeq = 0;
    game.retries = 0;
    $("signin-error").textContent = "";
    scheduleRefresh();
    connect();
  }

  // --- forms --------------------------------------------------------------------------------
  $("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = $("login-button");
    if (button.disabled) return;
    button.disabled = true;
    const username = $("username").value.trim();
    const password = $("password");
    setStatus("connecting", "signing in…");
    try {
      const session = await api("POST", "/auth/login", {username, password: password.value});
      password.value = "";
      const characters = session.characters || [];
      if (characters.length === 0) throw new Error("this account has no character");
      // The name signed in with is a character's name; play that one.
      const wanted = characters.find((c) => String(c.name).toLowerCase() === username.toLowerCase()) || characters[0];
      game.myName = wanted.name;
      start(session.access_token, wanted.id);
    } catch (err) {
      signedOut(`Could not sign in: ${err.message}`);
    }
  });

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (!token) return;
    $("connect").disabled = true;
    start(token, null);
  });

  $("leave").addEventListener("click", () => runLine("quit"));

  // Words as the server's commands take them: the first is the command, the rest its args.
  function runLine(line) {
    const words = line.trim().split(/\s+/).filter(Boolean);
    if (words.length === 0) return;
    show(`> ${words.join(" ")}`, "kind-echo");
    sendFrame({type: "game_command", data: {command: words[0], args: words.slice(1)}});
  }

  const input = $("line");
  $("send").addEventListener("submit", (event) => {
    event.preventDefault();
    const line = input.value;
    input.value = "";
    if (!line.trim()) return;
    if (game.history[game.history.length - 1] !== line) game.history.push(line);
    if (game.history.length > MAX_HISTORY) game.history.shift();
    game.historyAt = game.history.length;
    toBottom();  // sending means reading the newest again
    runLine(line);
  });

  // Up and down walk the lines sent before, like a shell.
  input.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowUp" && event.key !== "ArrowDown") return;
    if (game.history.length === 0) return;
    event.preventDefault();
    const step = event.key === "ArrowUp" ? -1 : 1;
    game.historyAt = Math.max(0, Math.min(game.history.length, game.historyAt + step));
    input.value = game.history[game.historyAt] || "";
  });
})();
