"""The dashboards shipped with Vigil (package data: `*.yml`)."""
