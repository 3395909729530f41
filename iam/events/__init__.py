"""Receivers of events that outside systems push to us (WeCom's encrypted callbacks)."""
