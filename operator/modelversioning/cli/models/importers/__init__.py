"""Import model versions from where they already live (``kubectl models import ...`` and
``kubectl models register --dvc``), with their lineage filled in. No typer/rich/kubernetes here:
the commands are ``commands/imports.py`` and ``commands/register.py``.

* :mod:`.mlflow_client`    - MLflow's Python client (the ``mlflow`` extra: mlflow-skinny; not in the
  operator image): connecting, retries, its errors as ours;
* :mod:`.mlflow_registry`  - registered models, versions (by number, alias, all), runs, logged models;
* :mod:`.mlflow_artifacts` - where a version's bytes are (runs:/, models:/, mlflow-artifacts:/
  resolved), streamed and hashed, and its MLmodel file;
* :mod:`.mlflow_lineage`   - pure: a run (+ logged model, MLmodel) -> lineage, what is missing;
* :mod:`.mlflow_plan`      - what each version becomes (manifest) and what refuses the import;
* :mod:`.mapping`          - MLflow version -> semantic version, aliases -> stage, missing-lineage reporting;
* :mod:`.dvc`, :mod:`.dvc_hash` - DVC metadata (``*.dvc`` files, ``dvc.lock``, ``.dvc/config``) of a
  repository, and the md5-checked hashing of its artifact.
"""
