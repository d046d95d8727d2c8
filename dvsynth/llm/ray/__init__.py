"""The Ray engine (`--engine ray`): a run's pending requests through a Ray Data pipeline,
answered by OpenAI-compatible servers (HTTP) or by vLLM replicas on a GPU cluster.
Nothing here is imported unless `--engine ray` is chosen."""
