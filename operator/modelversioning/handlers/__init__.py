"""Thin kopf wiring around the reconcilers. Importing `modelversioning.handlers.wiring`
registers the handlers with kopf (`startup`, `watch`; the shared `runtime.Operator`)."""
