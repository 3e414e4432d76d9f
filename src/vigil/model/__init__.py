"""Data model shared by every stage: label sets, label matchers, sample values."""
