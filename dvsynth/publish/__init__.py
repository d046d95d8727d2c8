"""Publishing: export runs as a Hugging Face dataset folder, build its card, push it."""
