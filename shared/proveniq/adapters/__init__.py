"""Adapters: the ports of the kernel implemented over real services and local files."""
