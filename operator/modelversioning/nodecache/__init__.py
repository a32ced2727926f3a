"""The node agent of the node cache (``modelversioning node-cache``, a DaemonSet of the chart): the only
process that reads or writes a node's cache of verified artifacts. See docs/design.md "Node cache".

* :mod:`.store`: the content-addressed store on the node's disk and its LRU bookkeeping.
* :mod:`.server`: the HTTP protocol (read, offer, metrics) and who may use it
  (:mod:`modelversioning.domain.node_cache` decides).
* :mod:`.kube`: TokenReview and the ModelVersions of a namespace, from the API server.

The init container's side is :mod:`modelversioning.artifacts.node_cache`.
"""
