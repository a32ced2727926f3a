"""``kubectl models ui``: the web view (fleet, model, endpoint, diff) served on localhost with the user's
kubeconfig. See docs/design.md, "Web view"."""
