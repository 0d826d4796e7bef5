"""Valor: a chat agent that keeps its promises (shared runtime and CLI)."""
