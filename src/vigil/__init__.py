"""Vigil: metric-driven security monitoring that speaks the Prometheus ecosystem's formats."""

__version__ = "0.1.0"
