"""The page ``rnnkit serve`` shows at ``/``: pick a model, type a text, edit its options (JSON,
prefilled with the defaults from ``/v1/models``), run it, optionally streamed. Plain HTML and
JavaScript, nothing fetched from elsewhere; the text is shown with ``textContent`` (never parsed
as HTML)."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rnnkit serve</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#222}
textarea{width:100%;font-family:ui-monospace,monospace}
pre{background:#f4f4f4;padding:.8rem;white-space:pre-wrap;min-height:3rem}
.err{color:#b00020} label{display:block;margin:.6rem 0 .2rem} small{color:#666}
</style></head><body>
<h1>rnnkit serve</h1>
<label for="model">Model</label><select id="model"></select> <small id="summary"></small>
<label for="text">Text (the input; for a language model, the prompt)</label>
<textarea id="text" rows="5"></textarea>
<label for="options">Options (JSON: the predict options of this application)</label>
<textarea id="options" rows="4"></textarea>
<p><label><input type="checkbox" id="stream"> stream the output</label>
<button id="run">Run</button></p>
<pre id="output" aria-live="polite"></pre>
<script>
const $ = id => document.getElementById(id);
let models = [];
function show(i) {
  const m = models[i]; if (!m) return;
  $("summary").textContent = m.application + ": " + m.summary;
  const defaults = {};
  for (const o of m.options) defaults[o.name] = o.default;
  $("options").value = JSON.stringify(defaults, null, 1);
}
async function load() {
  const r = await fetch("/v1/models"); models = (await r.json()).models;
  models.forEach((m, i) => { const o = document.createElement("option");
    o.value = i; o.textContent = m.name + " (" + m.application + ")"; $("model").append(o); });
  show(0);
}
async function run() {
  const out = $("output"); out.textContent = ""; out.className = "";
  let options;
  try { options = JSON.parse($("options").value || "{}"); }
  catch (e) { out.className = "err"; out.textContent = "options: " + e; return; }
  const m = models[$("model").value];
  const body = Object.assign({}, options, {text: $("text").value, stream: $("stream").checked});
  const r = await fetch("/v1/" + encodeURIComponent(m.name) + "/predict",
    {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  if (!r.ok) { out.className = "err";
    out.textContent = r.status + ": " + (await r.json()).error; return; }
  if (!body.stream) { out.textContent = (await r.json()).output; return; }
  const reader = r.body.getReader(), decoder = new TextDecoder();
  for (;;) { const {done, value} = await reader.read(); if (done) break;
    out.textContent += decoder.decode(value, {stream: true}); }
}
$("model").addEventListener("change", e => show(e.target.value));
$("run").addEventListener("click", run);
load();
</script></body></html>
"""
