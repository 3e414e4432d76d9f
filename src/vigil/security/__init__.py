"""Security collectors: listening ports, file integrity and authentication logs."""
