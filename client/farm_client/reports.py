"""A test's results as one HTML page (`farm results --html`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from jinja2 import Environment

from farm_worker.protocol import SUBUNIT_FAILED, SUBUNIT_PASSED, SUBUNIT_SKIPPED

_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>refstack-farm: {{ test.id }} {{ test.state }}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222}
h1{font-size:1.4em} h2{font-size:1.15em;margin-top:2em}
table{border-collapse:collapse} td,th{padding:.25em .8em;border-bottom:1px solid #ddd;
text-align:left} td.n{text-align:right;font-variant-numeric:tabular-nums}
.state{font-weight:bold;padding:.1em .5em;border-radius:.3em;color:#fff;background:#777}
.passed{background:#2e7d32}.failed,.error,.timed_out,.rejected{background:#c62828}
.cancelled{background:#ef6c00}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:12px}
details{margin:.4em 0} summary{cursor:pointer;font-family:monospace}
</style></head><body>
<h1>Test run {{ test.id }} <span class="state {{ test.state }}">{{ test.state }}</span></h1>
<table>
<tr><th>Tempest</th><td>{{ test.tempest_version or "-" }}</td></tr>
<tr><th>Worker</th><td>{{ test.worker or "-" }}</td></tr>
<tr><th>Started</th><td>{{ test.started_at or "-" }}</td></tr>
<tr><th>Finished</th><td>{{ test.finished_at or "-" }}</td></tr>
<tr><th>Message</th><td>{{ test.message or "" }}</td></tr>
</table>
<h2>Summary</h2>
<table><tr><th>passed</th><th>failed</th><th>skipped</th><th>total</th>
<th>test time</th></tr>
<tr><td class="n">{{ passed }}</td><td class="n">{{ failed|length }}</td>
<td class="n">{{ skipped }}</td><td class="n">{{ rows|length }}</td>
<td class="n">{{ "%.1f"|format(total_s) }} s</td></tr></table>
<h2>Failures ({{ failed|length }})</h2>
{% for r in failed %}<details open><summary>{{ r.name }}</summary>
<pre>{{ r.detail or "(no detail)" }}</pre></details>
{% else %}<p>None.</p>{% endfor %}
<h2>Slowest tests</h2>
<table><tr><th>test</th><th>status</th><th>seconds</th></tr>
{% for r in slowest %}<tr><td>{{ r.name }}</td><td>{{ r.status }}</td>
<td class="n">{{ "%.2f"|format(r.duration_s) }}</td></tr>{% endfor %}
</table>
<p><small>refstack-farm report, made {{ now }}</small></p>
</body></html>
"""
_ENV = Environment(autoescape=True)


def html_report(test: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
                slowest: int = 20) -> str:
    """One self-contained page (no external resources): summary, failures with their
    tracebacks, the slowest tests. `test` is the API's test view, `rows` its results."""
    timed = [r for r in rows if r.get("duration_s") is not None]
    return _ENV.from_string(_HTML).render(
        test=test, rows=rows,
        passed=sum(r["status"] in SUBUNIT_PASSED for r in rows),
        skipped=sum(r["status"] in SUBUNIT_SKIPPED for r in rows),
        failed=[r for r in rows if r["status"] in SUBUNIT_FAILED],
        total_s=sum(r["duration_s"] for r in timed),
        slowest=sorted(timed, key=lambda r: -r["duration_s"])[:slowest],
        now=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
