// The benchmark's load client: many WebSocket clients in one Node process, driven by bench.py.
//
// bench.py writes one JSON request per line on stdin ({id, op, ...}) and reads one JSON answer per
// line on stdout ({id, ok, result} or {id, ok: false, error}); requests run one at a time.  Node
// and `ws` are used because a Python client saturates its core long before the servers do; the
// frames are never JSON-parsed here: the markers this client put into its own chat lines are found
// with a regular expression, and everything else is only counted.  Every wait is bounded.
//
// ops: connect (open sockets, wait for each `welcome`), quiet (wait until no frame arrives for a
// while), fanout (paced say lines from one socket, delivery latency and order at every listener,
// optionally a probe measuring command round trips meanwhile), mixed (every socket plays a random
// mix of commands), close (a group), counts.

import { createInterface } from "node:readline";
import { performance } from "node:perf_hooks";
import WebSocket from "ws";

const groups = new Map(); // name -> array of Sock (null where the connect failed)
const framesByGroup = new Map(); // name -> frames its sockets received
let framesSeen = 0;

const FANOUT_RE = /L(\d+):(\d+):(\d+\.\d+)/;
const MIXED_RE = /M:(\d+\.\d+)/;
const CHANNEL_RE = /"channel":\s*"(\w+)"/;
const CLOSE_WAIT_MS = 3000;
// mythos_rt closes a socket that sent nothing for 300 s (4001), as the contract says; a real
// client pings. Each socket sends a `ping` once it has been silent this long; the first one at a
// random moment, so the pings of a join storm are spread over the interval.
const KEEPALIVE_MS = 120000;
const PONG_MAX_BYTES = 400; // a keep-alive pong is not counted as traffic by `quiet`

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class Sock {
  constructor(ws, token, group) {
    this.ws = ws;
    this.token = token;
    this.onText = null; // the current phase's handler, (text, now) => void
    this.lastSent = performance.now() - Math.random() * KEEPALIVE_MS;
    ws.on("message", (data, isBinary) => {
      if (!isPong(data)) {
        framesSeen += 1;
        framesByGroup.set(group, (framesByGroup.get(group) ?? 0) + 1);
      }
      if (this.onText !== null && !isBinary) this.onText(data.toString(), performance.now());
    });
  }

  send(obj) {
    this.lastSent = performance.now();
    this.ws.send(JSON.stringify({ ...obj, csrfToken: this.token }));
  }

  command(command, args) {
    this.send({ type: "game_command", data: { command, args } });
  }
}

function isPong(data) {
  return data.length < PONG_MAX_BYTES && data.toString().includes('"pong"');
}

function keepAlive() {
  const due = performance.now() - KEEPALIVE_MS;
  for (const socks of groups.values()) {
    for (const sock of socks) {
      if (sock !== null && sock.lastSent < due && sock.ws.readyState === WebSocket.OPEN) {
        sock.send({ type: "ping" });
      }
    }
  }
}

function openSock(url, timeoutMs, group) {
  const token = new URL(url).searchParams.get("token") ?? "";
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, {
      perMessageDeflate: false, handshakeTimeout: timeoutMs, skipUTF8Validation: true,
    });
    const sock = new Sock(ws, token, group);
    const timer = setTimeout(() => fail(new Error("no welcome in time")), timeoutMs);
    const fail = (err) => {
      clearTimeout(timer);
      sock.onText = null;
      ws.terminate();
      reject(err);
    };
    sock.onText = (text) => {
      if (text.includes('"welcome"')) {
        clearTimeout(timer);
        sock.onText = null;
        resolve(sock);
      }
    };
    ws.on("error", fail);
    ws.on("unexpected-response", (_req, res) => fail(new Error(`HTTP ${res.statusCode}`)));
    ws.on("close", (code) => fail(new Error(`closed ${code} before welcome`)));
  });
}

// Opens the sockets with at most `concurrency` handshakes in flight; a socket whose handshake
// fails is tried again (at most `attempts` times in all): a server that drops handshakes under a
// join storm is slow, and the time shows it, but the fan-out needs its listeners.
async function connect({ group, urls, concurrency, timeout_s, attempts }) {
  const socks = new Array(urls.length).fill(null);
  const errors = [];
  let next = 0, retries = 0;
  const start = performance.now();
  const worker = async () => {
    while (next < urls.length) {
      const index = next++;
      for (let attempt = 1; attempt <= attempts && socks[index] === null; attempt++) {
        try {
          socks[index] = await openSock(urls[index], timeout_s * 1000, group);
        } catch (err) {
          if (attempt === attempts) errors.push(String(err.message ?? err));
          else retries += 1;
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, urls.length) }, worker));
  const elapsed_s = (performance.now() - start) / 1000;
  groups.set(group, [...(groups.get(group) ?? []), ...socks]);
  return {
    ok: urls.length - errors.length, failed: errors.length, retries, elapsed_s,
    errors: errors.slice(0, 5),
  };
}

// Waits until the sockets of the groups whose names start with `prefix` (all: "") have received
// no frame for `quiet_s`: a join storm or a backlog is over.
async function quiet({ prefix = "", quiet_s, timeout_s }) {
  const frames = () =>
    [...framesByGroup].reduce((sum, [group, count]) => sum + (group.startsWith(prefix) ? count : 0), 0);
  const end = performance.now() + timeout_s * 1000;
  let seen = -1;
  while (performance.now() < end) {
    const now = frames();
    if (now === seen) return { quiet: true };
    seen = now;
    await sleep(quiet_s * 1000);
  }
  return { quiet: false };
}

function live(group) {
  return (groups.get(group) ?? []).filter((sock) => sock !== null);
}

function sockAt([group, index]) {
  const sock = (groups.get(group) ?? [])[index];
  if (!sock) throw new Error(`no socket ${group}[${index}]`);
  return sock;
}

function percentiles(values, count) {
  const sorted = Float64Array.from(values.subarray ? values.subarray(0, count) : values).sort();
  const at = (p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : null);
  return { n: sorted.length, p50_ms: at(0.5), p99_ms: at(0.99), max_ms: sorted.length ? sorted[sorted.length - 1] : null };
}

// A socket sends commands one after another (each waits for its reply) until `until()` is false;
// round trips by kind.  `isReply(kind, text)` recognises the reply.
async function probe(sock, kinds, gapMs, until, isReply) {
  const rtts = Object.fromEntries(kinds.map((kind) => [kind, []]));
  let turn = 0;
  while (until()) {
    const kind = kinds[turn++ % kinds.length];
    const rtt = await roundTrip(sock, kind, isReply);
    if (rtt !== null) rtts[kind].push(rtt);
    await sleep(gapMs);
  }
  sock.onText = null;
  return Object.fromEntries(kinds.map((kind) => [kind, percentiles(rtts[kind], rtts[kind].length)]));
}

function roundTrip(sock, kind, isReply, args = [], timeoutMs = 10000) {
  return new Promise((resolve) => {
    const start = performance.now();
    const timer = setTimeout(() => resolve(null), timeoutMs);
    sock.onText = (text, now) => {
      if (isReply(kind, text)) {
        clearTimeout(timer);
        resolve(now - start);
      }
    };
    if (kind === "ping") sock.send({ type: "ping" });
    else sock.command(kind, args);
  });
}

function replyOf(kind, text) {
  return kind === "ping" ? text.includes('"pong"') : text.includes('"command_response"');
}

async function fanout({ speaker, listeners, rate, duration_s, deadline_s, step, probe: probeSpec }) {
  const receivers = live(listeners);
  const lines = Math.max(1, Math.round(rate * duration_s));
  const total = lines * receivers.length;
  const latencies = new Float64Array(total);
  const deadlineMs = deadline_s * 1000;
  let received = 0, delivered = 0, late = 0, outOfOrder = 0;
  let finish;
  const finished = new Promise((resolve) => (finish = resolve));
  receivers.forEach((sock) => {
    let expected = 0;
    sock.onText = (text, now) => {
      const match = FANOUT_RE.exec(text);
      if (match === null || Number(match[1]) !== step) return;
      const index = Number(match[2]);
      const latency = now - Number(match[3]);
      if (received < total) latencies[received] = latency;
      received += 1;
      if (index !== expected) outOfOrder += 1;
      else if (latency > deadlineMs) late += 1;
      else delivered += 1;
      expected = index + 1;
      if (delivered + late + outOfOrder >= total) finish();
    };
  });
  const talker = sockAt(speaker);
  talker.onText = null;
  let sending = true;
  const probing = probeSpec
    ? probe(sockAt(probeSpec.sock), probeSpec.kinds, probeSpec.gap_ms, () => sending, replyOf)
    : Promise.resolve(null);
  const start = performance.now();
  for (let sent = 0; sent < lines; ) {
    const now = performance.now();
    while (sent < lines && start + (sent * 1000) / rate <= now) {
      talker.command("say", [`L${step}:${sent}:${performance.now().toFixed(3)}`]);
      sent += 1;
    }
    if (sent < lines) await sleep(Math.max(1, start + (sent * 1000) / rate - performance.now()));
  }
  const sendS = (performance.now() - start) / 1000;
  await Promise.race([finished, sleep(deadlineMs)]);
  sending = false;
  const probeResult = await probing;
  receivers.forEach((sock) => (sock.onText = null));
  return {
    lines, listeners: receivers.length, expected: total, delivered, late, out_of_order: outOfOrder,
    received, send_s: sendS, ...percentiles(latencies, Math.min(received, total)), probe: probeResult,
  };
}

// A small deterministic generator, so every server sees the same sequence of actions.
function rng(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function pick(random, weights) {
  const entries = Object.entries(weights);
  let roll = random() * entries.reduce((sum, [, weight]) => sum + weight, 0);
  for (const [kind, weight] of entries) {
    roll -= weight;
    if (roll < 0) return kind;
  }
  return entries[entries.length - 1][0];
}

function actionArgs(kind, random, names, stamp) {
  if (kind === "say" || kind === "local" || kind === "global") return [`M:${stamp}`];
  if (kind === "whisper") return [names[Math.floor(random() * names.length)], `M:${stamp}`];
  if (kind === "go") return [random() < 0.5 ? "east" : "west"];
  return [];
}

async function mixed({ group, names, duration_s, think_ms, weights, seed }) {
  const socks = live(group);
  const random = rng(seed);
  const rtts = {}, deliveries = {};
  const note = (table, kind, value) => (table[kind] ??= []).push(value);
  const end = performance.now() + duration_s * 1000;
  const play = async (sock, index) => {
    await sleep(random() * think_ms);
    while (performance.now() < end) {
      const kind = pick(random, weights);
      const stamp = performance.now().toFixed(3);
      const rtt = await new Promise((resolve) => {
        const start = performance.now();
        const timer = setTimeout(() => resolve(null), 10000);
        sock.onText = (text, now) => {
          if (text.includes('"chat_message"')) {
            const match = MIXED_RE.exec(text);
            if (match) note(deliveries, CHANNEL_RE.exec(text)?.[1] ?? "?", now - Number(match[1]));
          } else if (text.includes('"command_response"')) {
            clearTimeout(timer);
            resolve(now - start);
          }
        };
        sock.command(kind, actionArgs(kind, random, names.filter((_, i) => i !== index), stamp));
      });
      if (rtt !== null) note(rtts, kind, rtt);
      await sleep(Math.min(think_ms * (0.5 + random()), Math.max(0, end - performance.now())));
    }
  };
  await Promise.all(socks.map(play));
  await sleep(500); // the last deliveries
  socks.forEach((sock) => (sock.onText = null));
  const summary = (table) =>
    Object.fromEntries(Object.entries(table).map(([kind, values]) => [kind, percentiles(values, values.length)]));
  const all = (table) => Object.values(table).flat();
  return {
    players: socks.length,
    rtt: summary(rtts),
    delivery: summary(deliveries),
    rtt_all: percentiles(all(rtts), all(rtts).length),
    delivery_all: percentiles(all(deliveries), all(deliveries).length),
  };
}

async function close({ group }) {
  const socks = live(group);
  groups.delete(group);
  await Promise.race([
    Promise.all(socks.map((sock) => new Promise((resolve) => {
      if (sock.ws.readyState === WebSocket.CLOSED) return resolve();
      sock.ws.once("close", resolve);
      sock.ws.close();
    }))),
    sleep(CLOSE_WAIT_MS),
  ]);
  socks.forEach((sock) => sock.ws.terminate());
  return { closed: socks.length };
}

async function counts() {
  return { frames: framesSeen, groups: Object.fromEntries([...groups].map(([name, socks]) => [name, socks.length])) };
}

const OPS = { connect, quiet, fanout, mixed, close, counts };

setInterval(keepAlive, 1000).unref();

const lines = createInterface({ input: process.stdin });
const queue = [];
let busy = false;

async function drain() {
  if (busy) return;
  busy = true;
  while (queue.length) {
    const request = queue.shift();
    let answer;
    try {
      const op = OPS[request.op];
      if (!op) throw new Error(`unknown op ${request.op}`);
      answer = { id: request.id, ok: true, result: await op(request) };
    } catch (err) {
      answer = { id: request.id, ok: false, error: String(err?.stack ?? err) };
    }
    process.stdout.write(JSON.stringify(answer) + "\n");
  }
  busy = false;
}

lines.on("line", (line) => {
  if (!line.trim()) return;
  queue.push(JSON.parse(line));
  drain();
});
lines.on("close", () => process.exit(0));
