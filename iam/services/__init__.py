"""Use cases: functions of (store, plain values). They never see a request or a template."""
