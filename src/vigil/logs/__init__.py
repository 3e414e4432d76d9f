"""Log following and parsing: tail files (with rotation and persisted offsets) as input for log rules."""
