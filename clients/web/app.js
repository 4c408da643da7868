// whospoke's browser page: sign in with an API key, upload a recording and see who spoke
// when, or stream the microphone live (WebRTC WHIP, else WebSocket). Plain JS, no build.
"use strict";

const KEY_STORAGE = "whospoke.apiKey";
const LATENCY_MS = 2000;
const POLL_MS = 1000;
const ICE_GATHERING_TIMEOUT_MS = 2000;
const COMPLETION_TIMEOUT_MS = 120000;
// A WHIP session that answers but sends no `ready` over its data channel by then is given up.
const WEBRTC_READY_TIMEOUT_MS = 10000;
// Provisional events of one analysis step arrive together; a longer pause starts a new step.
const PROVISIONAL_BURST_GAP_MS = 150;
const PALETTE = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#db2777",
  "#0891b2", "#65a30d", "#9333ea", "#ea580c", "#0d9488", "#4f46e5"];

const $ = (id) => document.getElementById(id);
const session = { key: null, pollTimer: null, jobId: null };
let live = null;

// ---------------------------------------------------------------------------------------
// The REST API
// ---------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const STATUS_HINTS = {
  400: "The request was refused",
  401: "The API key was not accepted",
  402: "Not enough credits",
  404: "Not found",
  413: "The file is too large",
  422: "The file could not be processed",
  429: "Too many requests",
};

/** Calls the API with the signed-in key; resolves to the JSON body, throws ApiError. */
async function api(path, options = {}) {
  const headers = { "X-API-Key": session.key, ...(options.headers || {}) };
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (error) {
    throw new ApiError(0, `Network error: ${error.message}`);
  }
  const text = await response.text();
  let body = text;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: keep the text
  }
  if (!response.ok) throw new ApiError(response.status, errorMessage(response, body));
  return body;
}

function errorMessage(response, body) {
  const detail = (body && body.detail) || (typeof body === "string" && body.trim()) || response.statusText;
  let message = `${STATUS_HINTS[response.status] || "Request failed"} (${response.status}): ${detail}`;
  const retryAfter = response.headers.get("Retry-After");
  if (response.status === 429 && retryAfter) message += ` — try again in ${retryAfter} s`;
  return message;
}

function showError(id, message) {
  const element = $(id);
  element.textContent = message || "";
  element.hidden = !message;
}

// ---------------------------------------------------------------------------------------
// Signing in and out
// ---------------------------------------------------------------------------------------

async function signIn(key) {
  showError("signin-error", "");
  session.key = key;
  let credits;
  try {
    credits = await api("/api/v1/credits");
  } catch (error) {
    session.key = null;
    if (error.status === 401) localStorage.removeItem(KEY_STORAGE);
    showError("signin-error", error.message);
    return;
  }
  localStorage.setItem(KEY_STORAGE, key);
  $("signin-form").hidden = true;
  $("account").hidden = false;
  $("app").hidden = false;
  showCredits(credits.balance);
  refreshJobs();
}

function showCredits(balance) {
  $("account-info").textContent = `Signed in · ${Math.floor(balance).toLocaleString()} credits`;
}

async function refreshCredits() {
  try {
    showCredits((await api("/api/v1/credits")).balance);
  } catch {
    // the next action will show the error
  }
}

function signOut() {
  if (live) stopTransport(live);
  live = null;
  stopPolling();
  localStorage.removeItem(KEY_STORAGE);
  session.key = null;
  $("api-key").value = "";
  $("signin-form").hidden = false;
  $("account").hidden = true;
  $("app").hidden = true;
  $("job").hidden = true;
  resetLivePanel();
}

// ---------------------------------------------------------------------------------------
// Uploads and jobs
// ---------------------------------------------------------------------------------------

async function upload(event) {
  event.preventDefault();
  const file = $("file-input").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  const speakers = $("num-speakers").value.trim();
  if (speakers) form.append("num_speakers", speakers);
  showError("upload-error", "");
  $("upload-button").disabled = true;
  $("upload-status").textContent = `Uploading ${file.name} (${formatBytes(file.size)})…`;
  try {
    const job = await api("/api/v1/speaker/extract", { method: "POST", body: form });
    $("upload-status").textContent = `Job ${job.id} accepted.`;
    openJob(job.id);
    refreshJobs();
  } catch (error) {
    $("upload-status").textContent = "";
    showError("upload-error", error.message);
  } finally {
    $("upload-button").disabled = false;
  }
}

function stopPolling() {
  clearTimeout(session.pollTimer);
  session.pollTimer = null;
}

/** Shows job `id` and follows it until it is COMPLETED or FAILED. */
async function openJob(id) {
  stopPolling();
  session.jobId = id;
  const section = $("job");
  section.hidden = false;
  $("job-title").textContent = `Job ${id}`;
  $("job-status").textContent = "…";
  $("job-progress").textContent = "";
  $("job-result").hidden = true;
  showError("job-error", "");
  section.scrollIntoView({ behavior: "smooth", block: "start" });
  const started = Date.now();
  const poll = async () => {
    if (session.jobId !== id) return;
    let job;
    try {
      job = await api(`/api/v1/speaker/jobs/${id}`);
    } catch (error) {
      showError("job-error", error.message);
      return;
    }
    if (session.jobId !== id) return;
    renderJobHeader(job, started);
    if (job.status === "PENDING" || job.status === "PROCESSING") {
      session.pollTimer = setTimeout(poll, POLL_MS);
    } else {
      if (job.status === "COMPLETED") renderJobResult(job);
      refreshJobs();
      refreshCredits();
    }
  };
  await poll();
}

function renderJobHeader(job, started) {
  let name = job.display_name || job.filename || "";
  if (name === job.job_type) name = "";
  $("job-title").textContent = `Job ${job.id} · ${job.job_type}${name ? ` · ${name}` : ""}`;
  $("job").dataset.status = job.status;
  $("job-status").textContent = job.status;
  const waited = Math.round((Date.now() - started) / 1000);
  const progress = {
    PENDING: `queued… ${waited} s`,
    PROCESSING: `analysing… ${waited} s`,
    COMPLETED: job.duration_seconds ? `${formatSeconds(job.duration_seconds)} of audio, ${job.credits_used ?? 0} credits` : "",
    FAILED: "",
  };
  $("job-progress").textContent = progress[job.status] ?? "";
  if (job.status === "FAILED") showError("job-error", job.error_message || "The job failed.");
}

function renderJobResult(job) {
  const result = job.result;
  const labels = sortLabels(result.speakers.map((speaker) => speaker.label));
  const turns = result.segments.map((s) => ({ ...s, final: true }));
  renderTimeline($("job-timeline"), turns, result.duration_seconds || job.duration_seconds || 1, labels);
  const body = $("job-speakers").querySelector("tbody");
  body.replaceChildren(...result.speakers.map(speakerRow));
  const downloads = $("job-downloads");
  downloads.replaceChildren();
  if (result.rttm_url) {
    downloads.append("Download: ", link(result.rttm_url, "RTTM", `job-${job.id}.rttm`, "job-rttm"));
  }
  $("job-result").hidden = false;
}

function speakerRow(speaker) {
  const stats = speaker.stats || {};
  const row = document.createElement("tr");
  row.dataset.speaker = speaker.label;
  const name = document.createElement("th");
  name.scope = "row";
  name.append(swatch(speaker.label), speaker.label);
  const cells = [
    formatSeconds(stats.speaking_seconds),
    `${Math.round((stats.share_of_speech || 0) * 100)} %`,
    String(stats.turns ?? ""),
    formatSeconds(stats.overlapped_seconds),
    Number.isFinite(stats.rms_db) ? `${stats.rms_db.toFixed(1)} dB` : "—",
  ].map((text) => {
    const cell = document.createElement("td");
    cell.textContent = text;
    return cell;
  });
  const track = document.createElement("td");
  track.className = "track-cell";
  if (speaker.download_url) {
    const audio = document.createElement("audio");
    audio.controls = true;
    audio.preload = "metadata";
    audio.src = speaker.download_url;
    audio.setAttribute("aria-label", `Track of ${speaker.label}`);
    track.append(audio, link(speaker.download_url, "WAV", `${speaker.label}.wav`));
  } else {
    track.textContent = "—";
  }
  row.append(name, ...cells, track);
  return row;
}

async function refreshJobs() {
  let page;
  try {
    page = await api("/api/v1/speaker/jobs?limit=10");
  } catch {
    return;
  }
  const list = $("jobs-list");
  list.replaceChildren(...page.items.map((job) => {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "link";
    const name = job.display_name || job.filename || "";
    const parts = [`#${job.id} ${job.job_type}`];
    if (name && name !== job.job_type) parts.push(name);
    if (job.num_speakers != null) parts.push(`${job.num_speakers} speaker${job.num_speakers === 1 ? "" : "s"}`);
    if (job.created_at) parts.push(new Date(job.created_at).toLocaleString());
    button.textContent = parts.join(" · ");
    button.addEventListener("click", () => openJob(job.id));
    const status = document.createElement("span");
    status.className = `badge ${job.status.toLowerCase()}`;
    status.textContent = job.status;
    item.append(button, " ", status);
    return item;
  }));
  if (page.items.length === 0) list.textContent = "No jobs yet.";
}

// ---------------------------------------------------------------------------------------
// The timeline: one row per speaker, a bar per turn
// ---------------------------------------------------------------------------------------

function speakerNumber(label) {
  const match = /(\d+)\s*$/.exec(label);
  return match ? Number(match[1]) : NaN;
}

function sortLabels(labels) {
  return [...new Set(labels)].sort((a, b) => (speakerNumber(a) - speakerNumber(b)) || a.localeCompare(b));
}

function speakerColor(label) {
  let n = speakerNumber(label);
  if (Number.isNaN(n)) n = [...label].reduce((sum, c) => sum + c.charCodeAt(0), 0);
  return PALETTE[n % PALETTE.length];
}

function swatch(label) {
  const element = document.createElement("span");
  element.className = "swatch";
  element.style.background = speakerColor(label);
  element.setAttribute("aria-hidden", "true");
  return element;
}

/** Draws `turns` ({speaker, start, end, final}) on `0..duration` seconds. */
function renderTimeline(container, turns, duration, labels = sortLabels(turns.map((t) => t.speaker))) {
  const rows = labels.map((label) => {
    const row = document.createElement("div");
    row.className = "row";
    row.dataset.speaker = label;
    const name = document.createElement("span");
    name.className = "row-label";
    name.append(swatch(label), label);
    const track = document.createElement("div");
    track.className = "track";
    for (const turn of turns) {
      if (turn.speaker !== label) continue;
      const bar = document.createElement("div");
      bar.className = `turn ${turn.final ? "final" : "provisional"}`;
      bar.style.left = `${(100 * turn.start) / duration}%`;
      bar.style.width = `${Math.max(0.2, (100 * (turn.end - turn.start)) / duration)}%`;
      bar.style.setProperty("--color", speakerColor(label));
      bar.title = `${label}: ${turn.start.toFixed(2)}–${turn.end.toFixed(2)} s${turn.final ? "" : " (provisional)"}`;
      track.append(bar);
    }
    row.append(name, track);
    return row;
  });
  container.replaceChildren(...rows, timeAxis(duration));
  container.setAttribute("aria-label",
    `Speaker timeline: ${labels.length} speaker${labels.length === 1 ? "" : "s"} over ${formatSeconds(duration)}`);
}

function timeAxis(duration) {
  const axis = document.createElement("div");
  axis.className = "row axis";
  const spacer = document.createElement("span");
  spacer.className = "row-label";
  const track = document.createElement("div");
  track.className = "track";
  const step = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600].find((s) => duration / s <= 8) || 7200;
  for (let t = 0; t <= duration; t += step) {
    const tick = document.createElement("span");
    tick.className = "tick";
    tick.style.left = `${(100 * t) / duration}%`;
    tick.textContent = formatClock(t);
    if (t > 0 && duration - t < duration / 20) tick.classList.add("end");
    track.append(tick);
  }
  axis.append(spacer, track);
  return axis;
}

// ---------------------------------------------------------------------------------------
// Live: state, events, rendering
// ---------------------------------------------------------------------------------------

function newLiveState() {
  const state = {
    transport: null, // "webrtc" | "websocket"
    media: null,
    pc: null,
    ws: null,
    audio: null,
    sessionUrl: null,
    jobId: null,
    stepMs: 500,
    readyAt: null,
    stoppedAt: null,
    turns: new Map(), // "speaker|start" → {speaker, start, end, final, burst}
    burst: 0,
    lastProvisionalAt: 0,
    ticker: null,
    completionTimer: null,
    completed: null,
    ready: null,
    resolveReady: null,
  };
  state.ready = new Promise((resolve) => {
    state.resolveReady = resolve;
  });
  return state;
}

function setLiveState(state, text) {
  $("live").dataset.state = state;
  $("live-status").textContent = text;
  $("live-start").disabled = !["idle", "finished", "error"].includes(state);
  $("live-stop").disabled = state !== "live";
}

function setTransport(transport, note = "") {
  $("live").dataset.transport = transport;
  const names = { webrtc: "WebRTC (WHIP)", websocket: "WebSocket" };
  $("live-transport").textContent = (names[transport] || "—") + (note ? ` — ${note}` : "");
}

function resetLivePanel() {
  setLiveState("idle", "Idle");
  setTransport("");
  $("live-speakers").textContent = "0";
  $("live-elapsed").textContent = "0.0 s";
  $("live-timeline").replaceChildren();
  $("live-finished").hidden = true;
  showError("live-error", "");
}

/** Seconds of audio the server has had, by the wall clock since `ready`. */
function liveNow(state) {
  if (state.readyAt == null) return 0;
  const end = state.stoppedAt ?? performance.now();
  let now = (end - state.readyAt) / 1000;
  for (const turn of state.turns.values()) now = Math.max(now, turn.end ?? turn.start);
  return now;
}

function handleLiveEvent(state, message) {
  if (state !== live) return;
  switch (message.type) {
    case "ready":
      state.readyAt = performance.now();
      state.jobId = message.job_id;
      state.stepMs = message.step_ms || state.stepMs;
      state.resolveReady();
      setLiveState("live", `Listening (job ${message.job_id})`);
      break;
    case "speaker":
      upsertTurn(state, message);
      break;
    case "relabel":
      relabel(state, message.from, message.to);
      break;
    case "usage":
      $("live-elapsed").title = `${message.audio_seconds} s of audio, ${message.credits} credits`;
      break;
    case "warning":
      $("live-status").textContent = `Listening — ${message.message}`;
      break;
    case "completed":
      finishLive(state, message);
      break;
    case "error":
      failLive(state, `${message.code}: ${message.message}`);
      break;
    default:
      break;
  }
  renderLive(state);
}

function upsertTurn(state, event) {
  const turn = { speaker: event.speaker, start: event.start, end: event.end, final: event.final };
  const key = `${turn.speaker}|${turn.start}`;
  if (turn.final) {
    // A final turn supersedes the provisional guesses of that speaker it covers.
    for (const [k, t] of state.turns) {
      if (!t.final && t.speaker === turn.speaker && t.start < turn.end) state.turns.delete(k);
    }
    state.turns.set(key, turn);
    return;
  }
  const now = performance.now();
  if (now - state.lastProvisionalAt > PROVISIONAL_BURST_GAP_MS) {
    // A new step restates every provisional turn: forget the previous step's.
    state.burst += 1;
    for (const [k, t] of state.turns) if (!t.final) state.turns.delete(k);
  }
  state.lastProvisionalAt = now;
  const existing = state.turns.get(key);
  if (existing && existing.final) return;
  state.turns.set(key, { ...turn, burst: state.burst });
}

function relabel(state, from, to) {
  for (const [key, turn] of [...state.turns]) {
    if (turn.speaker !== from) continue;
    state.turns.delete(key);
    const moved = { ...turn, speaker: to };
    const newKey = `${to}|${turn.start}`;
    const existing = state.turns.get(newKey);
    if (!(existing && existing.final && !moved.final)) state.turns.set(newKey, moved);
  }
}

function renderLive(state) {
  if (state !== live) return;
  const now = liveNow(state);
  const turns = [...state.turns.values()].map((t) => ({ ...t, end: t.end ?? now }));
  const labels = sortLabels(turns.map((t) => t.speaker));
  $("live-speakers").textContent = String(labels.length);
  $("live-elapsed").textContent = `${now.toFixed(1)} s`;
  renderTimeline($("live-timeline"), turns, Math.max(now, 10), labels);
}

// ---------------------------------------------------------------------------------------
// Live: starting and stopping, WHIP first, WebSocket as the fallback
// ---------------------------------------------------------------------------------------

async function startLive() {
  if (live && !["finished", "error", "idle"].includes($("live").dataset.state)) return;
  resetLivePanel();
  const state = newLiveState();
  live = state;
  setLiveState("connecting", "Asking for the microphone…");
  try {
    state.media = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      video: false,
    });
  } catch (error) {
    failLive(state, `No microphone: ${error.message}`);
    return;
  }
  setLiveState("connecting", "Connecting…");
  try {
    await startWhip(state);
    setTransport("webrtc");
  } catch (error) {
    if (state !== live) return;
    closePeer(state);
    if (error instanceof ApiError && (error.status === 401 || error.status === 402)) {
      failLive(state, error.message);
      return;
    }
    console.info("WHIP unavailable, falling back to WebSocket:", error.message);
    try {
      await startWebSocket(state);
      setTransport("websocket", `WebRTC unavailable: ${error.message}`);
    } catch (wsError) {
      failLive(state, wsError.message);
      return;
    }
  }
  state.ticker = setInterval(() => renderLive(state), 250);
}

async function startWhip(state) {
  if (typeof RTCPeerConnection !== "function") throw new Error("this browser has no RTCPeerConnection");
  const pc = new RTCPeerConnection({ iceServers: [] });
  state.pc = pc;
  pc.addTransceiver(state.media.getAudioTracks()[0], { direction: "sendonly" });
  const events = pc.createDataChannel("events");
  events.onmessage = (message) => handleLiveEvent(state, JSON.parse(message.data));
  await pc.setLocalDescription(await pc.createOffer());
  await iceGatheringComplete(pc, ICE_GATHERING_TIMEOUT_MS);
  let response;
  try {
    response = await fetch(`/api/v1/speaker/whip?latency_ms=${LATENCY_MS}`, {
      method: "POST",
      headers: { Authorization: `Bearer ${session.key}`, "Content-Type": "application/sdp" },
      body: pc.localDescription.sdp,
    });
  } catch (error) {
    throw new Error(`network error: ${error.message}`);
  }
  const body = await response.text();
  if (response.status !== 201) {
    let detail = body;
    try {
      detail = JSON.parse(body).detail || body;
    } catch {
      // plain text
    }
    throw new ApiError(response.status, `WHIP ${response.status}${detail ? `: ${detail}` : ""}`);
  }
  const location = response.headers.get("Location");
  if (!location) throw new Error("WHIP answer without a Location");
  state.sessionUrl = new URL(location, window.location.href).href;
  state.jobId = response.headers.get("X-Job-Id");
  try {
    await pc.setRemoteDescription({ type: "answer", sdp: body });
    await whipReady(state, pc);
  } catch (error) {
    // Give the half-made session back; the caller falls back to the WebSocket.
    fetch(state.sessionUrl, { method: "DELETE", headers: { Authorization: `Bearer ${session.key}` } })
      .catch(() => {});
    throw error;
  }
  state.transport = "webrtc";
  pc.addEventListener("connectionstatechange", () => {
    if (pc.connectionState === "failed" && state === live && !state.completed) {
      failLive(state, "The WebRTC connection failed");
    }
  });
}

/** Resolves on the session's `ready` event, rejects if the connection fails or it is late. */
function whipReady(state, pc) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no ready event over WebRTC in time")), WEBRTC_READY_TIMEOUT_MS);
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "failed") reject(new Error("the WebRTC connection failed"));
    });
    state.ready.then(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

function iceGatheringComplete(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

async function startWebSocket(state) {
  // A single-use token keeps the API key out of the URL.
  const { token } = await api("/api/v1/speaker/stream/token", { method: "POST" });
  const audio = new AudioContext();
  state.audio = audio;
  await audio.audioWorklet.addModule("/worklet.js");
  await audio.resume();
  const source = audio.createMediaStreamSource(state.media);
  const chunker = new AudioWorkletNode(audio, "pcm-chunker");
  const mute = audio.createGain();
  mute.gain.value = 0;
  source.connect(chunker).connect(mute).connect(audio.destination);

  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${window.location.host}/api/v1/speaker/stream?token=${encodeURIComponent(token)}`);
  ws.binaryType = "arraybuffer";
  state.ws = ws;
  state.transport = "websocket";
  const pending = [];
  chunker.port.onmessage = (message) => {
    if (state.stoppedAt != null) return;
    if (ws.readyState === WebSocket.OPEN) ws.send(message.data);
    else if (ws.readyState === WebSocket.CONNECTING) pending.push(message.data);
  };
  ws.onmessage = (message) => {
    if (typeof message.data === "string") handleLiveEvent(state, JSON.parse(message.data));
  };
  await new Promise((resolve, reject) => {
    ws.onopen = () => {
      ws.send(JSON.stringify({
        type: "start", sample_rate: audio.sampleRate, channels: 1, encoding: "pcm_f32le", latency_ms: LATENCY_MS,
      }));
      for (const chunk of pending.splice(0)) ws.send(chunk);
      resolve();
    };
    ws.onerror = () => reject(new Error("The WebSocket connection failed"));
  });
  ws.onclose = (event) => {
    if (state === live && !state.completed && $("live").dataset.state !== "error") {
      failLive(state, `The connection closed (${event.code}${event.reason ? ` ${event.reason}` : ""}) before the job completed`);
    }
  };
}

async function stopLive() {
  const state = live;
  if (!state) return;
  setLiveState("stopping", "Stopping: finalizing the job…");
  state.stoppedAt = performance.now();
  stopMicrophone(state);
  state.completionTimer = setTimeout(() => failLive(state, "No completion from the server in time"),
    COMPLETION_TIMEOUT_MS);
  try {
    if (state.transport === "webrtc") {
      const response = await fetch(state.sessionUrl, {
        method: "DELETE",
        headers: { Authorization: `Bearer ${session.key}` },
      });
      const body = await response.json().catch(() => null);
      if (!response.ok) throw new ApiError(response.status, errorMessage(response, body));
      if (body && body.type === "completed") handleLiveEvent(state, body);
      closePeer(state);
    } else if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      state.ws.send(JSON.stringify({ type: "end" }));
      // `completed` arrives through handleLiveEvent.
    }
  } catch (error) {
    failLive(state, error.message);
  }
}

function finishLive(state, completed) {
  if (state.completed) return;
  state.completed = completed;
  if (state.stoppedAt == null) state.stoppedAt = performance.now();
  stopTransport(state);
  const speakers = completed.speakers ? completed.speakers.length : 0;
  setLiveState("finished", "Finished");
  $("live-finished-info").textContent =
    `Job ${completed.job_id}: ${formatSeconds(completed.duration_seconds)}, ${speakers} speaker${speakers === 1 ? "" : "s"}, ${completed.credits_used ?? 0} credits.`;
  $("live-finished").hidden = false;
  $("live-open-job").onclick = () => openJob(completed.job_id);
  refreshJobs();
  refreshCredits();
}

function failLive(state, message) {
  if (state !== live || state.completed) return;
  if (state.stoppedAt == null) state.stoppedAt = performance.now();
  stopTransport(state);
  setLiveState("error", "Stopped by an error");
  showError("live-error", message);
  if (state.jobId) refreshJobs();
}

function stopMicrophone(state) {
  if (state.media) state.media.getTracks().forEach((track) => track.stop());
  if (state.audio) state.audio.close().catch(() => {});
  state.audio = null;
}

function closePeer(state) {
  if (state.pc) state.pc.close();
  state.pc = null;
}

function stopTransport(state) {
  stopMicrophone(state);
  closePeer(state);
  if (state.ws && state.ws.readyState <= WebSocket.OPEN) state.ws.close(1000);
  clearInterval(state.ticker);
  clearTimeout(state.completionTimer);
}

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

function link(href, text, download, id) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  if (download) a.download = download;
  if (id) a.id = id;
  return a;
}

function formatSeconds(seconds) {
  if (!Number.isFinite(seconds)) return "—";
  return seconds < 60 ? `${seconds.toFixed(1)} s` : formatClock(seconds);
}

function formatClock(seconds) {
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

function formatBytes(bytes) {
  const units = ["B", "KB", "MB", "GB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

// ---------------------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------------------

function init() {
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (key) signIn(key);
  });
  $("signout").addEventListener("click", signOut);
  $("upload-form").addEventListener("submit", upload);
  $("jobs-refresh").addEventListener("click", refreshJobs);
  $("live-start").addEventListener("click", startLive);
  $("live-stop").addEventListener("click", stopLive);
  resetLivePanel();
  const saved = localStorage.getItem(KEY_STORAGE);
  if (saved) {
    $("api-key").value = saved;
    signIn(saved);
  }
}

init();
