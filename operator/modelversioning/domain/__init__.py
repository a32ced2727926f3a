"""Pure domain rules: semantic versions, the stage machine, traffic splits.

Nothing in this package talks to Kubernetes or imports kopf.
"""
