"""Tests for vigil.scrape."""
