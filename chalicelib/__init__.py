"""model-catalog: keeps one catalog of LLM models across providers fresh, and says when it changes."""
