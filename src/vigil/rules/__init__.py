"""Alerting and recording rules in Prometheus' rule-file format and semantics (3.x).

`rulefmt` parses and validates rule files, `recording`/`alerting` are the two rule kinds, `group`
evaluates a group of them at a timestamp it is given (the clock is the caller's). Rules run
untenanted for now: they query and write the whole store.
"""
