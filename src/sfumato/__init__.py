"""sfumato: a self-hosted gateway for AI image generation."""

__version__ = "0.1.0"
