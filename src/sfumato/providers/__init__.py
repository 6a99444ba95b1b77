"""Upstream adapters behind one small interface (``base.Provider``), plus the sandbox."""
