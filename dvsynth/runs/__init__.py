"""Run directories: `store` (rows and the stage each reached), `cache` (LLM responses),
`pipeline` (bounded concurrency and the step runner), `dirs` (several runs read as one)
and `stats` (what a set of runs holds)."""
