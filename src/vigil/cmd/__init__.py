"""Command-line entry points: argument parsing and the wiring of components from configuration."""
