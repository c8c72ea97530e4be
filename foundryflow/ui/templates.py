"""The pages' Jinja2 templates, autoescaped: every value from the database (errors,
params, run ids) is HTML-escaped unless it is Markup built here (the SVG plot).

Kept as Python strings rather than files so the package ships them whatever installs it
(the image installs a wheel, whose package data lists no templates).

Links are relative to the page (``root`` is the way back to the mount point, e.g.
``../`` from ``ui/executions``), so the pages work under ``/foundryflow`` in the Airflow
API server, under a base URL, and inside the Airflow UI's iframe. No external asset is
loaded: the Airflow UI may be offline.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from jinja2 import DictLoader, Environment, StrictUndefined
from markupsafe import Markup

REFRESH_SCRIPT = """
(function () {
  "use strict";
  var failures = 0;
  function main() { return document.querySelector("main"); }
  function delay() { return Number(main().getAttribute("data-refresh-ms")) || 0; }
  function schedule(ms) { if (ms > 0) { window.setTimeout(tick, ms); } }
  function show(text) {
    var state = document.getElementById("refresh-state");
    if (state) { state.textContent = text; }
  }
  function tick() {
    if (document.hidden) { schedule(delay()); return; }
    fetch(window.location.href, {cache: "no-store", credentials: "same-origin"})
      .then(function (response) {
        if (response.redirected) { window.location.replace(response.url); return null; }
        return response.text();
      })
      .then(function (body) {
        if (body === null) { return; }
        var page = new DOMParser().parseFromString(body, "text/html");
        var fresh = page.querySelector("main");
        if (!fresh) { throw new Error("no main element"); }
        main().querySelectorAll("details[id][open]").forEach(function (open) {
          var same = fresh.querySelector("#" + CSS.escape(open.id));
          if (same) { same.open = true; }
        });
        main().replaceWith(document.adoptNode(fresh));
        document.title = page.title;
        failures = 0;
        show(delay() > 0 ? "auto-refresh every " + delay() / 1000 + " s, updated " +
          new Date().toLocaleTimeString() : "up to date: nothing left to refresh");
        schedule(delay());
      })
      .catch(function () {
        failures += 1;
        show("refresh failed, retrying");
        schedule(Math.min(delay() * Math.pow(2, failures), 60000) || 10000);
      });
  }
  if (delay() > 0) { show("auto-refresh every " + delay() / 1000 + " s"); }
  schedule(delay());
})();
"""
"""While the page says so (``<main data-refresh-ms>``), fetch it again and swap ``<main>``:
no reload flicker, the scroll and open ``<details>`` stay. Stops once the server renders
a page without refresh (the execution finished, the matrix drained)."""

STYLE = """
:root {
  color-scheme: light dark;
  --bg: #ffffff; --fg: #1e293b; --muted: #64748b; --line: #e2e8f0; --panel: #f8fafc;
  --link: #1d4ed8; --code: #f1f5f9;
  --pending: #64748b; --running: #2563eb; --completed: #16a34a; --failed: #dc2626;
  --skipped: #94a3b8; --compensated: #b45309; --cancelled: #475569;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0f172a; --fg: #e2e8f0; --muted: #94a3b8; --line: #334155; --panel: #1e293b;
    --link: #93c5fd; --code: #1e293b;
    --pending: #94a3b8; --running: #60a5fa; --completed: #4ade80; --failed: #f87171;
    --skipped: #64748b; --compensated: #fbbf24; --cancelled: #94a3b8;
  }
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--bg); color: var(--fg); line-height: 1.45;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
}
a { color: var(--link); }
header.top {
  display: flex; flex-wrap: wrap; gap: .5rem 1.5rem; align-items: baseline;
  padding: .6rem 1rem; border-bottom: 1px solid var(--line); background: var(--panel);
}
header.top nav { display: flex; gap: 1rem; flex-wrap: wrap; }
header.top nav a { text-decoration: none; font-weight: 600; }
header.top nav a[aria-current="page"] { text-decoration: underline; }
#refresh-state { color: var(--muted); font-size: .85rem; margin-left: auto; }
main { padding: 1rem; max-width: 1400px; margin: 0 auto; }
h1 { font-size: 1.4rem; margin: .2rem 0 .6rem; display: flex; flex-wrap: wrap; gap: .5rem;
     align-items: center; overflow-wrap: anywhere; }
p { overflow-wrap: anywhere; }
h2 { font-size: 1.1rem; margin: 1.4rem 0 .5rem; }
.muted { color: var(--muted); }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
            font-size: .85rem; }
code { background: var(--code); padding: 0 .25rem; border-radius: 4px;
       overflow-wrap: anywhere; }
pre { background: var(--code); padding: .75rem; border-radius: 6px; overflow: auto;
      max-height: 28rem; white-space: pre-wrap; overflow-wrap: anywhere; margin: 0; }
.table-wrap { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .45rem .6rem; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { background: var(--panel); font-weight: 600; white-space: nowrap; }
tr:last-child td { border-bottom: none; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.error { color: var(--failed); min-width: 14rem; max-width: 32rem; white-space: pre-wrap;
           overflow-wrap: anywhere; }
.nowrap { white-space: nowrap; }
.badge { display: inline-block; padding: .05rem .5rem; border-radius: 999px;
         font-size: .78rem; font-weight: 700; letter-spacing: .02em; color: #fff;
         background: var(--pending); white-space: nowrap; }
.b-running { background: var(--running); } .b-completed { background: var(--completed); }
.b-failed { background: var(--failed); } .b-skipped { background: var(--skipped); }
.b-compensated { background: var(--compensated); } .b-cancelled { background: var(--cancelled); }
.bar { position: relative; height: 1.1rem; border-radius: 999px; background: var(--line);
       overflow: hidden; display: flex; min-width: 6rem; }
.bar > span { display: block; height: 100%; }
.bar.small { height: .6rem; }
.f-running { background: var(--running); } .f-completed { background: var(--completed); }
.f-failed { background: var(--failed); } .f-cancelled { background: var(--cancelled); }
.f-pending { background: var(--pending); }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(9.5rem, 1fr));
         gap: .6rem; margin: .8rem 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: .5rem .7rem;
        background: var(--panel); }
.card .label { font-size: .78rem; color: var(--muted); text-transform: uppercase;
               letter-spacing: .04em; }
.card .value { font-size: 1.25rem; font-weight: 700; font-variant-numeric: tabular-nums; }
.card .note { font-size: .8rem; color: var(--muted); }
.alert { border: 1px solid var(--failed); border-left-width: 5px; border-radius: 6px;
         padding: .6rem .8rem; margin: .8rem 0; }
.alert h2 { margin-top: 0; color: var(--failed); }
.ok { border-color: var(--completed); } .ok h2 { color: var(--completed); }
.cols { display: grid; grid-template-columns: repeat(auto-fit, minmax(20rem, 1fr));
        gap: 1rem; }
form.filters { display: flex; flex-wrap: wrap; gap: .6rem; align-items: end;
               margin: .5rem 0 1rem; }
form.filters label { display: flex; flex-direction: column; font-size: .8rem;
                     color: var(--muted); gap: .15rem; }
select, button, input { font: inherit; padding: .25rem .4rem; }
.chips { display: flex; flex-wrap: wrap; gap: .4rem; margin: .3rem 0; }
.pager { display: flex; gap: 1rem; margin: .8rem 0; }
figure.plot-box { margin: .5rem 0; border: 1px solid var(--line); border-radius: 6px;
                  padding: .4rem; }
svg.plot { width: 100%; height: auto; display: block; font-size: 12px; }
svg.plot text { fill: var(--fg); }
svg.plot .grid line { stroke: var(--line); }
svg.plot .axis line { stroke: var(--muted); }
svg.plot .axis-title { fill: var(--muted); }
svg.plot polyline.s-pending { stroke: var(--pending); }
svg.plot polyline.s-running { stroke: var(--running); }
svg.plot polyline.s-completed { stroke: var(--completed); }
svg.plot polyline.s-failed { stroke: var(--failed); }
svg.plot circle.s-pending, svg.plot rect.s-pending { fill: var(--pending); }
svg.plot circle.s-running, svg.plot rect.s-running { fill: var(--running); }
svg.plot circle.s-completed, svg.plot rect.s-completed { fill: var(--completed); }
svg.plot circle.s-failed, svg.plot rect.s-failed { fill: var(--failed); }
dl.meaning dt { font-weight: 600; } dl.meaning dd { margin: 0 0 .4rem 1rem; }
@media (max-width: 640px) {
  body { font-size: 14px; }
  main { padding: .6rem; }
  th, td { padding: .35rem .4rem; }
  .hide-narrow { display: none; }
}
"""

BASE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}{% endblock %} · foundryflow</title>
{% if refresh_ms %}<noscript><meta http-equiv="refresh" content="{{ refresh_ms // 1000 }}">
</noscript>{% endif %}
<style>{{ style }}</style>
</head>
<body>
<header class="top">
<nav aria-label="foundryflow">
<a href="{{ root }}ui/executions"{% if section == "executions" %} aria-current="page"{% endif %}>
Pipeline executions</a>
<a href="{{ root }}ui/matrix"{% if section == "matrix" %} aria-current="page"{% endif %}>
Benchmark matrix</a>
</nav>
<span id="refresh-state" role="status"></span>
</header>
<main data-refresh-ms="{{ refresh_ms or 0 }}">
{% block main %}{% endblock %}
</main>
<script>{{ script }}</script>
</body>
</html>
"""

MACROS = """
{% macro badge(status) -%}
<span class="badge b-{{ status|lower }}">{{ status }}</span>
{%- endmacro %}
{% macro bar(percent, status, label) -%}
<div class="bar" role="progressbar" aria-label="{{ label }}" aria-valuemin="0"
 aria-valuemax="100" aria-valuenow="{{ percent|pct }}">
<span class="fill f-{{ status|lower }}" style="width: {{ percent|pct }}%"></span></div>
{%- endmacro %}
"""

ERROR = """{% extends "base.html" %}
{% block title %}{{ code }} {{ heading }}{% endblock %}
{% block main %}
<h1>{{ heading }} <span class="badge b-failed">{{ code }}</span></h1>
<p>{{ message }}</p>
{% if hint %}<p class="muted">{{ hint }}</p>{% endif %}
<p><a href="{{ root }}ui/executions">Pipeline executions</a> ·
<a href="{{ root }}ui/matrix">Benchmark matrix</a></p>
{% endblock %}
"""

EXECUTIONS = """{% extends "base.html" %}
{% from "macros.html" import badge, bar %}
{% block title %}Pipeline executions{% endblock %}
{% block main %}
<h1>Pipeline executions</h1>
<p class="muted">Every run of a foundryflow pipeline, whichever engine runs it (Airflow or
Argo or inline): both record their steps in the same tables.</p>
<form class="filters" method="get" action="executions">
<label>Pipeline
<select name="pipeline"><option value="">all</option>
{% for name in page.pipelines %}<option{% if name == pipeline %} selected{% endif %}>{{ name }}
</option>{% endfor %}</select></label>
<label>Status
<select name="status"><option value="">all</option>
{% for s in statuses %}<option{% if s == status %} selected{% endif %}>{{ s }}</option>
{% endfor %}</select></label>
<label>Engine
<select name="engine"><option value="">all</option>
{% for name in page.engines %}<option{% if name == engine %} selected{% endif %}>{{ name }}
</option>{% endfor %}</select></label>
<button type="submit">Filter</button>
{% if pipeline or status or engine %}<a href="executions">clear</a>{% endif %}
</form>
<div class="chips" aria-label="executions by status">
{% for s, n in page.status_counts.items() if n %}
<a href="executions?{{ query(status=s) }}">{{ badge(s) }} {{ n }}</a>
{% endfor %}
</div>
{% if page.rows %}
<div class="table-wrap"><table id="executions">
<thead><tr><th>Started (UTC)</th><th>Pipeline</th><th>Engine</th><th>Engine run</th>
<th>Status</th><th>Progress</th><th class="num">Duration</th><th>Error</th></tr></thead>
<tbody>
{% for e in page.rows %}
<tr data-execution="{{ e.id }}" data-status="{{ e.status }}">
<td><a href="executions/{{ e.id }}">{{ e.started_at|dt }}</a></td>
<td><a href="executions/{{ e.id }}">{{ e.pipeline }}</a>
 <span class="muted">v{{ e.version }}</span></td>
<td>{{ e.engine }}</td>
<td><code>{{ e.engine_run_id }}</code></td>
<td>{{ badge(e.status) }}{% if e.rollback_status %}
 <span class="muted">rollback {{ e.rollback_status|lower }}</span>{% endif %}</td>
<td>{{ bar(e.percent, e.status, "steps finished") }}
<span class="muted nowrap">{{ e.steps_done }}/{{ e.steps_total }} · {{ e.percent|pct }} %
</span></td>
<td class="num">{{ duration_between(e.started_at, e.finished_at)|duration }}</td>
<td class="error">{{ (e.error or "")|truncate(160) }}</td>
</tr>
{% endfor %}
</tbody></table></div>
<div class="pager">
{% if offset > 0 %}<a href="executions?{{ query(offset=[offset - limit, 0]|max) }}">
newer</a>{% endif %}
{% if page.has_more %}<a href="executions?{{ query(offset=offset + limit) }}">older</a>
{% endif %}
</div>
{% else %}
<p>No executions{% if pipeline or status or engine %} match these filters{% endif %}.</p>
{% endif %}
{% endblock %}
"""

EXECUTION = """{% extends "base.html" %}
{% from "macros.html" import badge, bar %}
{% block title %}{{ p.pipeline }} {{ p.status }}{% endblock %}
{% block main %}
<p><a href="{{ root }}ui/executions">← executions</a></p>
<h1>{{ p.pipeline }} <span class="muted">v{{ p.version }}</span>
<span id="status">{{ badge(p.status) }}</span></h1>
<p class="muted">engine <strong>{{ p.engine }}</strong> · run <code>{{ p.engine_run_id }}</code>
{% if airflow_href %}
· <a href="{{ airflow_href }}" target="_top">open the DAG run in Airflow</a>
{% endif %}
· execution <code>{{ p.id }}</code>
· <a href="{{ root }}api/v1/executions/{{ p.id }}/progress">JSON</a></p>

<section aria-labelledby="progress-h">
<h2 id="progress-h">Progress</h2>
<div id="progress">{{ bar(p.percent, p.status, "steps finished") }}</div>
<div class="cards">
<div class="card"><div class="label">Done</div>
<div class="value" id="percent">{{ p.percent|pct }} %</div>
<div class="note">{{ p.steps_done }} of {{ p.steps_total }} steps</div></div>
<div class="card"><div class="label">ETA</div><div class="value" id="eta">{{ eta }}</div>
<div class="note">{{ eta_note }}</div></div>
<div class="card"><div class="label">Started</div><div class="value">{{ p.started_at|time }}</div>
<div class="note">{{ p.started_at|dt }}</div></div>
<div class="card"><div class="label">{{ "Took" if p.finished_at else "Running for" }}</div>
<div class="value">{{ duration_between(p.started_at, p.finished_at)|duration }}</div>
<div class="note">{% if p.finished_at %}finished {{ p.finished_at|dt }}{% else %}
not finished{% endif %}</div></div>
</div>
</section>

{% if p.error %}
<section class="alert" id="error"><h2>Error</h2><pre>{{ p.error }}</pre></section>
{% endif %}

{% if p.rollback_status or compensated or compensation_errors %}
<section class="alert{% if p.rollback_status == 'COMPLETED' %} ok{% endif %}" id="rollback">
<h2>Rollback: {{ (p.rollback_status or "not run")|lower }}</h2>
{% if compensated %}<p>Undone, last first: {% for s in compensated %}<code>{{ s }}</code>
{%- if not loop.last %}, {% endif %}{% endfor %}.</p>{% endif %}
{% if p.rollback_error %}<pre>{{ p.rollback_error }}</pre>{% endif %}
{% for s in compensation_errors %}<p>Compensation of <code>{{ s.id }}</code> failed:</p>
<pre>{{ s.compensation_error }}</pre>{% endfor %}
</section>
{% elif p.status in ("FAILED", "CANCELLED") %}
<section class="alert" id="rollback"><h2>Rollback: none</h2>
<p>No step was compensated (the pipeline does not roll back on failure, or nothing it
did needed undoing).</p></section>
{% endif %}

<section aria-labelledby="steps-h">
<h2 id="steps-h">Steps</h2>
<div class="table-wrap"><table id="steps">
<thead><tr><th>Step</th><th>Status</th><th class="num">Attempts</th>
<th class="hide-narrow">Started (UTC)</th><th class="num">Duration</th>
<th class="num">Items</th><th>Error</th><th>Compensation</th></tr></thead>
<tbody>
{% for s in p.steps %}
<tr data-step="{{ s.id }}" data-status="{{ s.status }}">
<td><strong>{{ s.id }}</strong>{% if s.name != s.id %}<br>{{ s.name }}{% endif %}
<br><span class="muted">{{ s.action }}</span></td>
<td>{{ badge(s.status) }}</td>
<td class="num">{{ s.attempt }}</td>
<td class="hide-narrow">{{ s.started_at|dt }}</td>
<td class="num">{% if s.duration_seconds is not none %}{{ s.duration_seconds|duration }}
{%- elif s.started_at %}{{ duration_between(s.started_at, none)|duration }}…{% else %}—
{%- endif %}</td>
<td class="num">{% if s.items_total is not none %}{{ s.items_done }}/{{ s.items_total }}
{%- else %}—{% endif %}</td>
<td class="error">{{ s.error or "" }}</td>
<td>{% if s.status == "COMPENSATED" %}undone{% endif %}
{%- if s.compensation_error %}<span class="error">failed: {{ s.compensation_error }}</span>
{%- endif %}</td>
</tr>
{% endfor %}
</tbody></table></div>
</section>

<div class="cols">
<section><h2>Outputs</h2>
{% if p.outputs is none %}<p class="muted">None yet: outputs are rendered when the run
finishes.</p>{% else %}<pre id="outputs">{{ p.outputs|pretty_json }}</pre>{% endif %}
</section>
<section><h2>Params</h2><pre id="params">{{ p.params|pretty_json }}</pre></section>
</div>
{% endblock %}
"""

MATRICES = """{% extends "base.html" %}
{% from "macros.html" import stacked %}
{% block title %}Benchmark matrix{% endblock %}
{% block main %}
<h1>Benchmark matrix</h1>
<p class="muted">Configs of each model version's matrix by status; a config is stale when
it is running without a heartbeat for {{ stale_after }} (<code>reset_stale</code>'s default
would re-queue it).</p>
{% if rows %}
<div class="table-wrap"><table id="matrices">
<thead><tr><th>Model version</th><th>Progress</th><th class="num">Pending</th>
<th class="num">Running</th><th class="num">Completed</th><th class="num">Failed</th>
<th class="num">Stale</th><th class="num">Total</th><th>Last activity (UTC)</th></tr></thead>
<tbody>
{% for m in rows %}
<tr data-model-version="{{ m.model_version_id }}">
<td><a href="matrix/{{ m.model_version_id }}">{{ m.model_uri }}</a>
<span class="muted">v{{ m.version }} · {{ m.dtype }} · #{{ m.model_version_id }}</span></td>
<td>{{ stacked(m) }}<span class="muted">{{ m.percent|pct }} %</span></td>
<td class="num">{{ m.pending }}</td><td class="num">{{ m.running }}</td>
<td class="num">{{ m.completed }}</td><td class="num">{{ m.failed }}</td>
<td class="num">{% if m.stale %}<span class="badge b-failed">{{ m.stale }}</span>
{%- else %}0{% endif %}</td>
<td class="num">{{ m.total }}</td>
<td>{{ m.last_activity|dt }}</td>
</tr>
{% endfor %}
</tbody></table></div>
{% else %}
<p>No model version has a matrix yet (<code>foundryflow matrix populate</code>).</p>
{% endif %}
{% endblock %}
"""

MATRIX = """{% extends "base.html" %}
{% from "macros.html" import badge, stacked %}
{% block title %}Matrix {{ d.model_uri }}{% endblock %}
{% block main %}
<p><a href="{{ root }}ui/matrix">← all matrices</a></p>
<h1>{{ d.model_uri }} <span class="muted">v{{ d.version }} · {{ d.dtype }} ·
model version #{{ d.model_version_id }}</span></h1>
<p class="muted">JSON: <a href="{{ root }}api/v1/matrix/{{ d.model_version_id }}">summary</a>
· <a href="{{ root }}api/v1/matrix/{{ d.model_version_id }}/timeline">timeline</a></p>
{{ stacked(p) }}
<div class="cards" id="counts">
<div class="card" data-count="total"><div class="label">Total</div>
<div class="value">{{ p.total }}</div><div class="note">{{ p.percent|pct }} % done</div></div>
{% for s in series %}
<div class="card" data-count="{{ s }}"><div class="label">{{ s }}</div>
<div class="value">{{ p[s] }}</div></div>
{% endfor %}
<div class="card" data-count="stale"><div class="label">Stale</div>
<div class="value">{{ d.stale_count }}</div>
<div class="note">running, no heartbeat for {{ stale_after }}</div></div>
<div class="card" id="claim-rate"><div class="label">Claim rate</div>
<div class="value">{{ d.claim_rate_per_minute|rate }}/min</div>
<div class="note">{{ d.claims_in_window }} claims in the last {{ d.window_minutes|pct }} min;
{{ d.claims_total }} claims in all</div></div>
<div class="card" id="completion-rate"><div class="label">Completion rate</div>
<div class="value">{{ p.rate_per_minute|rate }}/min</div>
<div class="note">finished in the last {{ p.window_minutes|pct }} min</div></div>
<div class="card" id="eta"><div class="label">ETA</div><div class="value">{{ eta }}</div>
<div class="note">pending and running at the completion rate</div></div>
</div>

<section aria-labelledby="plot-h">
<h2 id="plot-h">Configs by status over time</h2>
{% if plot %}
<figure class="plot-box">{{ plot }}
<figcaption class="muted">One point every {{ bucket }} (UTC), from the first config's
creation to {{ "now" if active else "the last change" }}.</figcaption></figure>
<details id="meaning"><summary>What each series means</summary>
<dl class="meaning">{% for s in series %}<dt>{{ s }}</dt><dd>{{ meaning[s] }}</dd>
{% endfor %}</dl></details>
<details id="timeline-table"><summary>The points as a table</summary>
<div class="table-wrap"><table><thead><tr><th>Time (UTC)</th>
{% for s in series %}<th class="num">{{ s }}</th>{% endfor %}</tr></thead><tbody>
{% for point in points %}<tr><td>{{ point.at|dt }}</td>
{% for s in series %}<td class="num">{{ point.count(s) }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table></div></details>
{% else %}
<p>No configs: the matrix of this model version is not populated.</p>
{% endif %}
</section>

<section aria-labelledby="stale-h">
<h2 id="stale-h">Stale configs ({{ d.stale_count }})</h2>
{% if d.stale_rows %}
<div class="table-wrap"><table id="stale">
<thead><tr><th class="num">Config</th><th>Cell</th><th>Claimed by</th>
<th>Claimed (UTC)</th><th>Last heartbeat (UTC)</th><th class="num">Attempts</th></tr></thead>
<tbody>
{% for r in d.stale_rows %}
<tr data-config="{{ r.id }}"><td class="num">{{ r.id }}</td>
<td>{{ r.hardware }} · {{ r.framework }} · {{ r.workload_type }} · batch {{ r.batch_size }}
· seq {{ r.sequence_length }}</td>
<td><code>{{ r.claimed_by or "" }}</code></td><td>{{ r.claimed_at|dt }}</td>
<td>{{ r.heartbeat_at|dt }}</td><td class="num">{{ r.attempts }}</td></tr>
{% endfor %}
</tbody></table></div>
{% if d.stale_count > d.stale_rows|length %}<p class="muted">The
{{ d.stale_rows|length }} oldest shown.</p>{% endif %}
{% else %}
<p class="muted">None: every running config heartbeated within {{ stale_after }}.</p>
{% endif %}
</section>

<section aria-labelledby="failures-h">
<h2 id="failures-h">Recent errors</h2>
{% if d.failures %}
<div class="table-wrap"><table id="failures">
<thead><tr><th class="num">Config</th><th>Cell</th><th>Status</th><th class="num">Attempts</th>
<th>Error</th><th>Updated (UTC)</th></tr></thead><tbody>
{% for r in d.failures %}
<tr data-config="{{ r.id }}"><td class="num">{{ r.id }}</td>
<td>{{ r.hardware }} · {{ r.framework }} · {{ r.workload_type }} · batch {{ r.batch_size }}
· seq {{ r.sequence_length }}</td>
<td>{{ badge(r.status) }}</td><td class="num">{{ r.attempts }}</td>
<td class="error">{{ r.last_error or "" }}</td><td>{{ r.updated_at|dt }}</td></tr>
{% endfor %}
</tbody></table></div>
{% else %}
<p class="muted">None.</p>
{% endif %}
</section>
{% endblock %}
"""

STACKED = """{% macro stacked(m) -%}
<div class="bar" role="img" aria-label="{{ m.completed }} completed, {{ m.failed }} failed,
 {{ m.running }} running, {{ m.pending }} pending of {{ m.total }}">
{%- for s in ("completed", "failed", "running") if m[s] %}
<span class="f-{{ s }}" style="width: {{ (100.0 * m[s] / m.total)|pct }}%"
 title="{{ s }}: {{ m[s] }}"></span>{% endfor %}</div>
{%- endmacro %}"""


def _dt(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _time(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%H:%M:%S") if value else "—"


def duration(seconds: float | None) -> str:
    """``0.4 s``, ``12.3 s``, ``4 min 05 s``, ``2 h 03 min``, ``3 d 4 h``."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


def duration_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None:
        return None
    return ((end or datetime.now(UTC)) - start).total_seconds()


def _pct(value: float) -> str:
    return f"{value:.1f}"


def _rate(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def _build() -> Environment:
    env = Environment(
        loader=DictLoader(
            {
                "base.html": BASE,
                "macros.html": MACROS + STACKED,
                "error.html": ERROR,
                "executions.html": EXECUTIONS,
                "execution.html": EXECUTION,
                "matrices.html": MATRICES,
                "matrix.html": MATRIX,
            }
        ),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters |= {
        "dt": _dt,
        "time": _time,
        "duration": duration,
        "pct": _pct,
        "rate": _rate,
        "pretty_json": _pretty_json,
        "urlseg": lambda value: quote(str(value), safe=""),
    }
    env.globals |= {
        # constants, not data: inside <style> and <script> entities would not be decoded
        "style": Markup(STYLE),
        "script": Markup(REFRESH_SCRIPT),
        "duration_between": duration_between,
    }
    return env


ENV = _build()


def render(name: str, **context: Any) -> str:
    """Render a page; ``root`` (the way back to the mount point) and ``section`` are
    expected by the layout, ``refresh_ms`` turns the auto-refresh on."""
    context.setdefault("refresh_ms", 0)
    return ENV.get_template(name).render(**context)
