"""dvsynth: dual-view instruction-following retrieval data by polarity reversal."""

__version__ = "0.1.0"
