"""Scraping Prometheus/OpenMetrics endpoints: config (`ScrapeConfig`), relabelling, targets, manager."""
