"""The page ``rnnkit serve`` shows at ``/``: pick a model and one of its routes (``predict``,
``generate``, ``transcribe``, …), type a text or choose a file where the route takes one (a WAV
file for speech), edit the options (JSON, prefilled with the defaults from ``/v1/models``), run
it, optionally streamed. Files a route answers with (a generated MIDI file and its piano roll)
are offered for download; a MIDI file can be played in the page by a small Web Audio
synthesiser (one triangle oscillator per note, read by the page's own MIDI parser). Plain HTML
and JavaScript, nothing fetched from elsewhere; text is shown with ``textContent`` (never parsed
as HTML)."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rnnkit serve</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#222}
textarea{width:100%;font-family:ui-monospace,monospace}
pre{background:#f4f4f4;padding:.8rem;white-space:pre-wrap;min-height:3rem}
.err{color:#b00020} label{display:block;margin:.6rem 0 .2rem} small{color:#666}
#files img{display:block;max-width:100%;margin:.4rem 0}
</style></head><body>
<h1>rnnkit serve</h1>
<label for="model">Model</label><select id="model"></select> <small id="summary"></small>
<label for="route">Route</label><select id="route"></select> <small id="help"></small>
<div id="text-box"><label for="text">Text (the input; for a language model, the prompt)</label>
<textarea id="text" rows="5"></textarea></div>
<div id="upload" hidden><label for="file" id="upload-label">File</label>
<input type="file" id="file"></div>
<label for="options">Options (JSON: the options of this route)</label>
<textarea id="options" rows="4"></textarea>
<p><label><input type="checkbox" id="stream"> stream the output</label>
<button id="run">Run</button></p>
<pre id="output" aria-live="polite"></pre>
<div id="files"></div>
<script>
const $ = id => document.getElementById(id);
let models = [];
function option(value) {
  const o = document.createElement("option"); o.value = value; o.textContent = value; return o;
}
function route() {
  const m = models[$("model").value]; return m ? m.routes[$("route").value || "predict"] : null;
}
function show(i) {
  const m = models[i]; if (!m) return;
  $("summary").textContent = m.application + ": " + m.summary;
  $("route").replaceChildren();
  for (const name of Object.keys(m.routes)) $("route").append(option(name));
  $("route").value = "predict";
  showRoute();
}
function showRoute() {
  const r = route(); if (!r) return;
  const defaults = {};
  for (const o of r.options) defaults[o.name] = o.default;
  $("options").value = JSON.stringify(defaults, null, 1);
  $("help").textContent = r.help;
  $("text-box").hidden = r.text === false;
  const uploads = Object.keys(r.uploads);
  $("upload").hidden = uploads.length === 0;
  $("upload-label").textContent = uploads.length ? "File (" + uploads.map(
    k => k + ": " + r.uploads[k]).join(", ") + ")" : "File";
  $("file").accept = Object.values(r.uploads).join(","); $("file").value = "";
  $("stream").disabled = Object.keys(r.downloads).length > 0;
}
async function load() {
  const r = await fetch("/v1/models"); models = (await r.json()).models;
  models.forEach((m, i) => { const o = document.createElement("option");
    o.value = i; o.textContent = m.name + " (" + m.application + ")"; $("model").append(o); });
  show(0);
}
function base64(file) {
  return new Promise((ok, fail) => { const reader = new FileReader();
    reader.onload = () => ok(String(reader.result).split(",")[1]);
    reader.onerror = () => fail(reader.error); reader.readAsDataURL(file); });
}
function bytesOf(text) {
  const raw = atob(text), bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}
// A standard MIDI file → notes {pitch, start, end (seconds), velocity}: note on/off, running
// status, tempo changes; other events are skipped.
function parseMidi(bytes) {
  let p = 0;
  const u16 = () => (bytes[p++] << 8) | bytes[p++];
  const u32 = () => ((u16() << 16) | u16()) >>> 0;
  const vlq = () => { let v = 0, b; do { b = bytes[p++]; v = v * 128 + (b & 127); }
    while (b & 128); return v; };
  if (u32() !== 0x4d546864) throw new Error("not a MIDI file");
  const size = u32(); u16(); const tracks = u16(), division = u16(); p = 8 + size;
  const events = [];
  for (let t = 0; t < tracks; t++) {
    if (u32() !== 0x4d54726b) throw new Error("MIDI track " + t + ": bad header");
    const end = u32() + p; let tick = 0, status = 0;
    while (p < end) {
      tick += vlq(); let s = bytes[p];
      if (s & 128) { p++; status = s; } else s = status;
      if (s === 0xff) { const type = bytes[p++], n = vlq();
        if (type === 0x51)
          events.push([tick, 0, (bytes[p] << 16) | (bytes[p + 1] << 8) | bytes[p + 2]]);
        p += n; }
      else if (s === 0xf0 || s === 0xf7) { p += vlq(); }
      else { const kind = s & 0xf0, a = bytes[p++];
        const b = kind === 0xc0 || kind === 0xd0 ? 0 : bytes[p++];
        if (kind === 0x90 && b > 0) events.push([tick, 2, a, b]);
        else if (kind === 0x80 || kind === 0x90) events.push([tick, 1, a]); }
    }
    p = end;
  }
  events.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  let tempo = 500000, last = 0, now = 0; const notes = [], open = {};
  for (const [tick, kind, a, b] of events) {
    now += (tick - last) * tempo / 1e6 / division; last = tick;
    if (kind === 0) tempo = a;
    else if (kind === 2) (open[a] = open[a] || []).push([now, b]);
    else { const on = (open[a] || []).shift();
      if (on) notes.push({pitch: a, start: on[0], end: now, velocity: on[1]}); }
  }
  return notes;
}
function playMidi(bytes) {
  const notes = parseMidi(bytes), ctx = new AudioContext(), t0 = ctx.currentTime + 0.1;
  for (const n of notes) {
    const osc = ctx.createOscillator(), gain = ctx.createGain();
    const peak = 0.12 * n.velocity / 127, start = t0 + n.start, end = t0 + n.end;
    osc.type = "triangle"; osc.frequency.value = 440 * Math.pow(2, (n.pitch - 69) / 12);
    gain.gain.setValueAtTime(0, start); gain.gain.linearRampToValueAtTime(peak, start + 0.01);
    gain.gain.setValueAtTime(peak, Math.max(start + 0.01, end - 0.03));
    gain.gain.linearRampToValueAtTime(0, end);
    osc.connect(gain).connect(ctx.destination); osc.start(start); osc.stop(end + 0.05);
  }
  return notes.length;
}
function showFile(f) {
  const bytes = bytesOf(f.data);
  const url = URL.createObjectURL(new Blob([bytes], {type: f.type}));
  const item = document.createElement("p"), link = document.createElement("a");
  link.href = url; link.download = f.name; link.textContent = "download " + f.name;
  item.append(link);
  if (f.type === "audio/midi") { const play = document.createElement("button");
    play.textContent = "play"; play.className = "play";
    play.addEventListener("click", () => playMidi(bytes)); item.append(" ", play); }
  if (f.type.startsWith("image/")) { const image = document.createElement("img");
    image.src = url; image.alt = f.name; item.append(image); }
  $("files").append(item);
}
async function run() {
  const out = $("output"); out.textContent = ""; out.className = "";
  $("files").replaceChildren();
  let options;
  try { options = JSON.parse($("options").value || "{}"); }
  catch (e) { out.className = "err"; out.textContent = "options: " + e; return; }
  const m = models[$("model").value], name = $("route").value || "predict", r = route();
  const files = Object.keys(r.downloads).length > 0;
  const body = Object.assign({}, options,
    {text: r.text === false ? "" : $("text").value, stream: $("stream").checked && !files});
  const chosen = $("file").files && $("file").files[0], uploads = Object.keys(r.uploads);
  if (chosen && uploads.length) body.uploads = {[uploads[0]]: await base64(chosen)};
  const resp = await fetch("/v1/" + encodeURIComponent(m.name) + "/" + encodeURIComponent(name),
    {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  if (!resp.ok) { out.className = "err";
    out.textContent = resp.status + ": " + (await resp.json()).error; return; }
  if (!body.stream) { const answer = await resp.json(); out.textContent = answer.output;
    for (const f of answer.files || []) showFile(f); return; }
  const reader = resp.body.getReader(), decoder = new TextDecoder();
  for (;;) { const {done, value} = await reader.read(); if (done) break;
    out.textContent += decoder.decode(value, {stream: true}); }
}
$("model").addEventListener("change", e => show(e.target.value));
$("route").addEventListener("change", showRoute);
$("run").addEventListener("click", run);
load();
</script></body></html>
"""
