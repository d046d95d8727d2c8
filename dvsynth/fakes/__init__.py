"""Loopback fakes of provider APIs for offline tests: they ride on `FakeLLMServer`'s port
and answer with the same deterministic bodies as its online chat endpoint."""
