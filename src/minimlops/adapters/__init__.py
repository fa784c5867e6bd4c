"""Adapters: the ports implemented on real technology, one module each."""
