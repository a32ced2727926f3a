"""Typed API of the modelversioning.io/v1alpha1 resources: the single source of truth.

`wire` holds every name we put on the wire (kinds, annotations, labels, finalizers, reasons); the
pydantic models (`modelversion`, `modelendpoint`, `model`, `strategy`, `settings`) hold the shapes.
The CRD YAML in crds/ and in the chart is generated from them (see `modelversioning.api.crdgen`).

Nothing is imported here, so `import modelversioning.api.wire` (domain code, the CLI's start) does
not build the pydantic models.
"""
