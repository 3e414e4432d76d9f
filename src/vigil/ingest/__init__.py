"""Ingest: turn decoded write requests into validated series and columnar appends to storage."""
