"""A test's results as one HTML page (`farm results --html`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from jinja2 import Environment

from farm_client.failures import class_line, failure_groups
from farm_worker.protocol import SUBUNIT_FAILED, Counts, describe_selection

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
.yes{color:#2e7d32;font-weight:bold}.no{color:#c62828;font-weight:bold}
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
<table><tr><th>passed</th><th>failed</th><th>skipped</th><th>not run</th><th>selected</th>
<th>test time</th></tr>
<tr><td class="n">{{ c.passed }}</td><td class="n">{{ c.failed }}</td>
<td class="n">{{ c.skipped }}</td><td class="n">{{ c.not_run }}</td>
<td class="n">{{ c.total }}</td>
<td class="n">{{ "%.1f"|format(total_s) }} s</td></tr></table>
{% if classes %}<p>{{ classes }}</p>{% endif %}
{% if selection %}<h2>Test list</h2>
<p>{{ selection_line }}</p>
{% if selection.renamed %}<table><tr><th>listed</th><th>ran</th><th>found by</th></tr>
{% for r in selection.renamed %}<tr><td><code>{{ r.listed }}</code></td>
<td><code>{{ r.ran }}</code></td><td>{{ r.by }}</td></tr>{% endfor %}</table>{% endif %}
{% if selection.not_found %}<p>Not found in this Tempest:</p><ul>
{% for name in selection.not_found %}<li><code>{{ name }}</code></li>{% endfor %}</ul>
{% endif %}{% endif %}
{% if compliance %}<h2>Guideline {{ compliance.version }} {{ compliance.target }}
({{ compliance.types|join(", ") }})</h2>
<p><b>{{ compliance.summary }}</b></p>
<table><tr><th>capability</th><th>status</th><th>passed</th><th>complete</th>
<th>tests not passed</th></tr>
{% for cap in compliance.capabilities %}<tr><td>{{ cap.name }}</td><td>{{ cap.status }}</td>
<td class="n">{{ cap.passed }}/{{ cap.total }}</td>
<td class="{{ 'yes' if cap.complete else 'no' }}">{{ "yes" if cap.complete else "no" }}</td>
<td>{% for t in cap.tests if t.result != "passed" %}<div><code>{{ t.name }}</code>:
{{ t.result }}{% if t.flagged %} (flagged){% endif %}{% if t.reason %}: {{ t.reason }}
{% endif %}</div>{% endfor %}</td></tr>{% endfor %}</table>{% endif %}
<h2>Failures ({{ failed }})</h2>
{% for g in groups %}<details{% if loop.index <= 5 %} open{% endif %}><summary>
{%- if g.tests|length == 1 %}{{ g.tests[0] }}{% else %}{{ g.tests|length }} tests, same
error: {{ g.error }}{% endif %}</summary>
{% if g.tests|length > 1 %}<ul>{% for name in g.tests %}<li><code>{{ name }}</code></li>
{% endfor %}</ul>{% endif %}
<pre>{{ g.detail or "(no detail)" }}</pre></details>
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
    """One self-contained page (no external resources): the counts, failures with their
    tracebacks (identical ones grouped), the slowest tests; what a test list matched
    and a guideline run's compliance by capability. `test` is the API's test view, `rows`
    its results."""
    timed = [r for r in rows if r.get("duration_s") is not None]
    counts = Counts.lenient(test.get("summary"))
    selection = test.get("selection")
    return _ENV.from_string(_HTML).render(
        selection=selection, compliance=test.get("compliance"),
        selection_line=describe_selection(selection) if selection else "",
        test=test, rows=rows, c=counts, classes=class_line(counts),
        groups=failure_groups(rows),
        failed=sum(r["status"] in SUBUNIT_FAILED for r in rows),
        total_s=sum(r["duration_s"] for r in timed),
        slowest=sorted(timed, key=lambda r: -r["duration_s"])[:slowest],
        now=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
