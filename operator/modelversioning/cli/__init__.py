"""Entry points: the operator (`modelversioning-operator run`) and the `kubectl models` plugin."""
