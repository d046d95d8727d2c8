"""Batch engines: provider batch APIs and OpenAI batch files, over the run's own state."""
