"""The test project's app: a model, tasks, and signal receivers that log."""
