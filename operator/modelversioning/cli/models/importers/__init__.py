"""Import model versions from where they already live (``kubectl models import ...`` and
``kubectl models register --dvc``), with their lineage filled in.

* :mod:`.mlflow`  - an MLflow tracking server and model registry, through MLflow's Python client
  (the ``mlflow`` extra: mlflow-skinny; not in the operator image);
* :mod:`.mapping` - MLflow version -> semantic version, aliases -> stage, missing-lineage reporting;
* :mod:`.dvc`     - DVC metadata (``*.dvc`` files, ``dvc.lock``, ``.dvc/config``) of a repository;
* :mod:`.command` - the ``import`` command group (Typer), printing YAML or applying.
"""
