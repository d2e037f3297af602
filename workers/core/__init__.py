"""The floor every other stands on: errors, event schemas and queues, messages, metrics,
settings, text, backoff. Imports nothing else of workers."""
