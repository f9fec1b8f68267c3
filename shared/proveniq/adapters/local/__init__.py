"""Local adapters for development, tests and offline verification (stand-ins for GCP)."""
