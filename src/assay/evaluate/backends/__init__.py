"""Evaluation backends: ``hf`` (in process) and ``openai`` (OpenAI-compatible server)."""
