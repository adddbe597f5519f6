"""Helpers for tests: tiny offline models (heavy imports stay inside the functions)."""

from .tiny_model import CHAT_TEMPLATE, build_tiny_lora, build_tiny_model, build_tokenizer

__all__ = ["CHAT_TEMPLATE", "build_tiny_lora", "build_tiny_model", "build_tokenizer"]
