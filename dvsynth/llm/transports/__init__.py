"""How calls travel besides litellm: a lean HTTP client for OpenAI-compatible servers
(`http`) and the embedded offline model (`local`)."""
