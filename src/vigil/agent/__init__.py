"""The agent: collects host, container and application metrics and ships them to a server."""
