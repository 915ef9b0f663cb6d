"""Decoding: the in-flight engine and what it is made of (cache surgery, sampling, the step rule,
per-row state, model hooks, residual sites, hidden-state capture) and the records it produces.
Knows nothing of files, runs or steering's mathematics; steering joins as a plugin."""
