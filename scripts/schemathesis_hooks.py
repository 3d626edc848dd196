"""Schemathesis hooks for the kairos run (scripts/schemathesis).

An event's or a feedback's `ts` must lie within a window of the server's clock
(`ingest.retention_days` back, `ingest.max_future_secs` ahead), which no JSON Schema can
state: a generated `ts` (years 0001 to 9999) is nearly always outside it and refused with
422, so a schema-valid event would never be accepted. This hook moves every *valid*
date-time `ts` of those bodies to now. A `ts` that is not a valid date-time (a negative case
aimed at it) is left alone, so a case that breaks the schema still breaks it; the window
itself is covered by the integration tests (tests/api/ingest.rs).
"""

from datetime import datetime, timezone

import jsonschema_rs
import schemathesis

_DATE_TIME = jsonschema_rs.validator_for({"type": "string", "format": "date-time"}, validate_formats=True)
_PATHS = {"/v1/events", "/v1/feedback"}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _move_ts(value):
    if isinstance(value, dict):
        if "ts" in value and _DATE_TIME.is_valid(value["ts"]):
            value["ts"] = _now()
        for v in value.values():
            if isinstance(v, list):
                for e in v:
                    _move_ts(e)
    return value


@schemathesis.hook
def map_case(context, case):
    if context.operation is not None and context.operation.path in _PATHS and isinstance(case.body, dict):
        _move_ts(case.body)
    return case
