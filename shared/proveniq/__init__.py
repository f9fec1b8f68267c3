"""Proveniq Ledger kernel: canonical entries, hash chain, RFC 6962 tree, proofs, checkpoints."""

__version__ = "0.1.0"
