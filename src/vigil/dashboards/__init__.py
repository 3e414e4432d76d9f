"""Dashboards as files: the YAML model, loading a directory, the built-in dashboards, and conversion
to and from Grafana's dashboard JSON."""
