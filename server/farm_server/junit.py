"""A test's results as JUnit XML (GET /v1/tests/<id>/results?format=junit)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from farm_server.models import ResultRow
from farm_worker.protocol import SUBUNIT_FAILED, SUBUNIT_SKIPPED


def junit_xml(test_id: str, rows: Sequence[ResultRow]) -> bytes:
    """One <testsuite> with a <testcase> per test; failures carry their traceback."""
    failures = sum(r.status in SUBUNIT_FAILED for r in rows)
    skipped = sum(r.status in SUBUNIT_SKIPPED for r in rows)
    total_time = sum(r.duration_s or 0.0 for r in rows)
    suite = ET.Element("testsuite", name=test_id, tests=str(len(rows)),
                       failures=str(failures), errors="0", skipped=str(skipped),
                       time=f"{total_time:.3f}")
    for r in rows:
        base = r.name.split("[", 1)[0]
        classname, _, name = base.rpartition(".")
        case = ET.SubElement(suite, "testcase", classname=classname or base, name=name or base,
                             time=f"{r.duration_s or 0.0:.3f}")
        first_line = (r.detail.strip().splitlines() or [r.status])[-1][:200]
        if r.status in SUBUNIT_FAILED:
            failure = ET.SubElement(case, "failure", message=first_line, type=r.status)
            failure.text = r.detail
        elif r.status in SUBUNIT_SKIPPED:
            ET.SubElement(case, "skipped", message=first_line)
    return bytes(ET.tostring(suite, encoding="utf-8", xml_declaration=True))
