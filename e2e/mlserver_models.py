"""Real scikit-learn models served by MLServer on the real node, for e2e/test_mlserver_e2e.py and the
benchmark (bench/oip.py): trained here on iris (shipped with scikit-learn), persisted with joblib (what
MLServer's sklearn runtime loads), uploaded to the harness's artifact server, registered with the real
CLI (``kubectl models register``, printed, its runtime filled in, created: the GitOps path), and asked
for predictions with the Open Inference Protocol by Triton's HTTP client.

MLServer as measured here (1.7.1, mlserver-sklearn 1.7.1, by running it; tests pin what the node shows):
- a request the protocol's schema refuses (a shape that is not a list, an unknown datatype, no inputs)
  is 422 with FastAPI's ``{"detail": [...]}``; an output the runtime does not have is 400;
- a tensor whose data does not fit its shape, or rows with the wrong number of features, is 500 (the
  reshape or scikit-learn's ValueError, unhandled: a text/plain traceback): a gateway counts it as a 5xx;
- a model file it cannot load: it logs the error and exits with status 0 (the kubelet restarts it).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from images import MLSERVER_IMAGE

KM = Path(sys.executable).parent / "kubectl-models"
KM_CMD = [str(KM)] if KM.exists() else [sys.executable, "-m", "modelversioning.cli.kubectl_models"]
OUTPUT = "predict"


def mlserver_runtime(model: str) -> dict[str, Any]:
    """An explicit spec.runtime serving MODEL_PATH/model.joblib with MLServer's sklearn runtime on the
    version's port; ready when MLServer says so (/v2/health/ready: the model is loaded). One process
    (no worker pool: the pods' root filesystem is read-only and the node has 2 cores)."""
    env = {
        "MLSERVER_MODEL_NAME": model,
        "MLSERVER_MODEL_VERSION": "$(MODEL_VERSION)",
        "MLSERVER_MODEL_IMPLEMENTATION": "mlserver_sklearn.SKLearnModel",
        "MLSERVER_MODEL_URI": "$(MODEL_PATH)/model.joblib",
        "MLSERVER_HTTP_PORT": "$(MODEL_PORT)",
        "MLSERVER_PARALLEL_WORKERS": "0",
    }
    return {
        "image": MLSERVER_IMAGE,
        "command": ["mlserver", "start", "/srv/mlserver"],
        "port": 8080,
        "healthPath": "/v2/health/ready",
        "env": [{"name": k, "value": v} for k, v in env.items()],
    }


def iris() -> tuple[Any, Any]:
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    return x, y


@dataclass(frozen=True)
class Trained:
    estimator: Any
    data: bytes  # joblib
    hyperparameters: dict[str, Any]
    accuracy: float


def train(kind: str = "base") -> Trained:
    """base: logistic regression on all of iris; retrained: a stronger regularisation on every other
    row (a MINOR release: same inputs, other answers on a few rows); broken: trained with a fifth
    feature, so every prediction on iris' four raises (ValueError in scikit-learn: MLServer's 500)."""
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x, y = iris()
    hyper: dict[str, Any] = {"C": 1.0, "rows": "all"}
    if kind == "retrained":
        hyper = {"C": 0.05, "rows": "even"}
        x, y = x[::2], y[::2]
    elif kind == "broken":
        hyper = {"C": 1.0, "rows": "all", "features": 5}
        x = np.hstack([x, np.ones((len(x), 1))])
    elif kind != "base":
        raise ValueError(kind)
    est = LogisticRegression(C=float(hyper["C"]), max_iter=1000).fit(x, y)
    buf = io.BytesIO()
    joblib.dump(est, buf)
    return Trained(est, buf.getvalue(), hyper, float(est.score(x, y)))


def register(
    dp: Any, kubeconfig: Path, ns: str, model: str, version: str, data: bytes, workdir: Path, **kw: Any
) -> dict[str, Any]:
    """Upload ``data`` as model.joblib, register it with ``kubectl models register`` (printed), fill in
    the MLServer runtime and create it; returns the ModelVersion. ``hyper``/``accuracy``: its lineage."""
    uri, _ = dp.art.put(f"{ns}/{model}/{version}/model.joblib", data)
    local = workdir / f"{model}-{version}" / "model.joblib"
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(data)
    import sklearn

    args = [
        "--kubeconfig", str(kubeconfig), "-n", ns, "register", model, version,
        "--artifact", str(local), "--uri", uri, "--format", "joblib", "--image", MLSERVER_IMAGE,
        "--port", "8080", "--framework", f"scikit-learn-{sklearn.__version__}", "--dataset", "iris",
        "--dataset-version", f"scikit-learn-{sklearn.__version__}", "--stage", kw.get("stage", "production"),
        "--code-repository", "https://git.example.com/ml/iris.git", "--code-commit", "3f9c2a1",
        "--author", "e2e@example.com", "--metric", f"accuracy={kw.get('accuracy', 0.9):.4f}",
    ]  # fmt: skip
    for k, v in (kw.get("hyper") or {}).items():
        args += ["--hyperparameter", f"{k}={v}"]
    p = subprocess.run([*KM_CMD, *args], capture_output=True, text=True, timeout=120, cwd=workdir)
    assert p.returncode == 0, f"register: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    mv = yaml.safe_load(p.stdout)
    assert mv["spec"]["runtime"] == {"image": MLSERVER_IMAGE, "port": 8080}, mv["spec"]["runtime"]
    mv["spec"]["runtime"] = mlserver_runtime(model)
    return dict(mv)


def oip_body(x: Any, shape: Any = None, outputs: tuple[str, ...] = ()) -> bytes:
    """A raw OIP inference request (FP64 rows); ``shape`` overrides the tensor's declared shape."""
    inp = {"name": "input-0", "shape": shape or list(x.shape), "datatype": "FP64", "data": x.ravel().tolist()}
    body: dict[str, Any] = {"inputs": [inp]}
    if outputs:
        body["outputs"] = [{"name": o} for o in outputs]
    return json.dumps(body).encode()


def oip_client(gw: Any) -> Any:
    import tritonclient.http as httpclient

    return httpclient.InferenceServerClient(url=f"{gw._client_host}:{gw.web_port}", network_timeout=30.0)


def predict(
    client: Any, host: str, model: str, x: Any, outputs: tuple[str, ...] = (OUTPUT,)
) -> dict[str, Any]:
    """The model's outputs for rows ``x`` through the gateway (Host: ``host``), with tritonclient; and
    the response's model_version under "model_version"."""
    import numpy as np
    import tritonclient.http as httpclient

    inp = httpclient.InferInput("input-0", list(x.shape), "FP64")
    # JSON tensors: Triton's binary tensor extension is Triton's (MLServer and the reference server
    # speak the protocol's JSON only)
    inp.set_data_from_numpy(np.asarray(x, dtype=np.float64), binary_data=False)
    wanted = [httpclient.InferRequestedOutput(o, binary_data=False) for o in outputs]
    res = client.infer(model, [inp], outputs=wanted, headers={"Host": host})
    out: dict[str, Any] = {o: res.as_numpy(o) for o in outputs}
    out["model_version"] = res.get_response().get("model_version")
    return out
