"""dedup-stream: streaming, privacy-preserving duplicate detection."""

__version__ = "0.1.0"
