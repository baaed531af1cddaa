"""A multi-model endpoint from the image: `docker run IMAGE serve` with SAGEMAKER_MULTI_MODEL=true and the models
where SageMaker puts them (/opt/ml/models/<name>/model, read-only), 50 models through a budget that holds a few."""

from __future__ import annotations

import re
import time

import pytest
import requests

from algorithms import registry
from tests import opt_ml as om
from tests.conftest import write_builtin_channels
from tests.container.conftest import TAG, docker, host_port, logs, unavailable, wait_ready
from tests.serving_helpers import variant

pytestmark = pytest.mark.container
IMAGE = f"byoc-xgboost:{TAG}"
FEATURES = ["mileage", "cylinder", "doors", "cruise", "sound", "leather", "make", "body_type"]
N_MODELS = 50
PER_WORKER = 6  # models that fit in one worker's budget
WORKERS = 2


@pytest.fixture(scope="module")
def image(docker_engine) -> str:
    if docker("image", "inspect", IMAGE, check=False).returncode:
        unavailable(f"image not built: {IMAGE}; build it with scripts/build_push.sh --no-push --images xgboost")
    return IMAGE


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, car_splits, car_schema):
    """50 distinct XGBoost models of ~2 MB each (300 deep trees; model i predicts 100 * i more than model 0)."""
    job = om.OptML(tmp_path_factory.mktemp("mme-train") / "opt_ml")
    write_builtin_channels(job, car_splits, car_schema)
    job.hyperparameters(num_round=300, max_depth=8, eta=0.05, early_stopping_rounds=0, min_child_weight=0)
    result = job.train("xgboost")
    assert result.returncode == 0, result.output
    root = tmp_path_factory.mktemp("opt-ml-models")
    for i in range(N_MODELS):
        variant(result.model_dir, root / f"m{i:02d}" / "model", "xgboost", 100.0 * i)
    return root


def worker_rss(name: str) -> dict[int, int]:
    """Resident memory (bytes) of the server's worker processes (gunicorn's arbiter's children), by host pid."""
    rows = [line.split() for line in docker("top", name, "-o", "pid,ppid,rss").stdout.splitlines()[1:]]
    pids = {int(r[0]) for r in rows}
    return {int(r[0]): int(r[2]) * 1024 for r in rows if int(r[1]) in pids}


def test_the_image_declares_the_multi_model_capability(image):
    labels = docker("image", "inspect", "--format", "{{json .Config.Labels}}", image).stdout
    assert '"com.amazonaws.sagemaker.capabilities.multi-models":"true"' in labels


def test_fifty_models_load_answer_and_are_evicted_and_reloaded_within_the_budget(image, containers, fleet, car_splits):
    model_size = sum(p.stat().st_size for p in (fleet / "m00" / "model").iterdir())
    budget_mib = WORKERS * PER_WORKER * model_size * 1.15 / 2**20
    name = containers.start(
        image,
        ["serve"],
        volumes=[(fleet, "/opt/ml/models", "ro")],
        env={
            "SAGEMAKER_MULTI_MODEL": "true",
            "SAGEMAKER_MODEL_SERVER_WORKERS": str(WORKERS),
            "SERVING_MME_MEMORY_MB": f"{budget_mib:.2f}",
        },
        ports=["8080"],
    )
    url = f"http://127.0.0.1:{host_port(name, 8080)}"
    wait_ready(name, f"{url}/ping")  # healthy with no model at all
    idle = worker_rss(name)
    assert len(idle) == WORKERS

    names = [f"m{i:02d}" for i in range(N_MODELS)]
    for model in names:
        document = {"model_name": model, "url": f"/opt/ml/models/{model}/model"}
        r = requests.post(f"{url}/models", json=document, timeout=60)
        assert r.status_code == 200, r.text
    r = requests.post(f"{url}/models", json={"model_name": "m00", "url": "/opt/ml/models/m00/model"}, timeout=60)
    assert r.status_code == 409, r.text
    listed, token = [], None
    while True:
        params = {"limit": 20, **({"next_page_token": token} if token else {})}
        page = requests.get(f"{url}/models", params=params, timeout=10).json()
        listed += [m["modelName"] for m in page["models"]]
        token = page.get("nextPageToken")
        if not token:
            break
    assert listed == names  # every model stays loaded for SageMaker, whatever a worker holds in memory

    records = car_splits["test"][FEATURES].head(3)
    body = records.to_csv(header=False, index=False)
    reference = registry.get("xgboost").load(fleet / "m00" / "model", threads=1)
    base = reference.predict(reference.schema.encode(records))
    for _ in range(2):
        for i, model in enumerate(names):
            r = requests.post(
                f"{url}/models/{model}/invoke",
                data=body,
                headers={"Content-Type": "text/csv", "Accept": "text/csv", "Connection": "close"},
                timeout=60,
            )
            assert r.status_code == 200, (model, r.text)
            assert [float(x) for x in r.text.split()] == pytest.approx((base + 100.0 * i).tolist(), abs=0.02), model

    log = logs(name)
    assert len(re.findall(r'model "m\d+" evicted', log)) >= N_MODELS, log[-3000:]
    assert len(re.findall(r'model "m\d+" loaded on use', log)) >= N_MODELS, log[-3000:]
    # Each worker's own account of what it held never exceeded its share of the budget...
    per_worker = budget_mib / WORKERS
    held: dict[str, float] = {}
    for pid, event, mib in re.findall(r"\[(\d+)\] \[INFO\] model \"m\d+\" (evicted|loaded).*?\(([\d.]+) MiB", log):
        held[pid] = held.get(pid, 0.0) + (float(mib) if event == "loaded" else -float(mib))
        assert held[pid] <= per_worker + 0.01, (pid, held[pid], per_worker)
    # ...and the processes agree (all the models at once would take N_MODELS * model_size in each worker).
    after = worker_rss(name)
    for pid, rss in after.items():
        grown = rss - idle.get(pid, rss)
        assert grown < per_worker * 2**20 + 25 * 2**20, (  # measured: ~5 MiB above the budget
            f"worker {pid} grew {grown / 2**20:.0f} MiB for a budget of {per_worker:.0f} MiB "
            f"(all {N_MODELS} models: {N_MODELS * model_size / 2**20:.0f} MiB)"
        )

    assert requests.delete(f"{url}/models/m07", timeout=10).status_code == 200
    r = requests.post(f"{url}/models/m07/invoke", data=body, headers={"Content-Type": "text/csv"}, timeout=10)
    assert r.status_code == 404, r.text
    docker("stop", name, timeout=60)


def test_without_the_variable_the_image_serves_one_model(image, containers):
    """The same image without SAGEMAKER_MULTI_MODEL is a single-model endpoint: no model mounted, /ping is 500."""
    name = containers.start(image, ["serve"], env={"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}, ports=["8080"])
    url = f"http://127.0.0.1:{host_port(name, 8080)}"
    deadline = time.monotonic() + 60
    while True:
        try:
            r = requests.get(f"{url}/ping", timeout=2)
            break
        except requests.RequestException:
            assert time.monotonic() < deadline, logs(name)
            time.sleep(0.2)
    assert r.status_code == 500 and "model" in r.text
    assert requests.get(f"{url}/models", timeout=5).status_code == 404
