"""Multi-model endpoints: the real server (`python -m serving.serve`, SAGEMAKER_MULTI_MODEL=true, 2 workers) speaking
SageMaker's multi-model container contract, with models trained by `python -m algorithms.train`."""

from __future__ import annotations

import json
import re
import urllib.parse
import uuid
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from algorithms import registry
from emulators.local_server import LocalServer
from serving import multimodel
from serving.multimodel import MultiModel, Registry
from tests.serving_helpers import variant

pytestmark = pytest.mark.slow
FEATURES = ["mileage", "cylinder", "doors", "cruise", "sound", "leather", "make", "body_type"]
MME = {"SAGEMAKER_MULTI_MODEL": "true"}


@pytest.fixture(scope="module")
def records(car_splits):
    return car_splits["test"][FEATURES].head(5).reset_index(drop=True)


@pytest.fixture(scope="module")
def csv_body(records) -> str:
    return records.to_csv(header=False, index=False)


@pytest.fixture(scope="module")
def models(trained, tmp_path_factory):
    """Per algorithm: 12 distinct models (shifted by 1000 each) as SageMaker lays them out, /opt/ml/models/<n>/model."""
    made = {}

    def get(algorithm: str) -> list[Path]:
        if algorithm not in made:
            root = tmp_path_factory.mktemp(f"models-{algorithm}")
            src = trained(algorithm).model_dir
            made[algorithm] = [variant(src, root / f"m{i}" / "model", algorithm, 1000.0 * i) for i in range(12)]
        return made[algorithm]

    return get


def expected(algorithm: str, model_dir: Path, records) -> list[float]:
    model = registry.get(algorithm).load(model_dir, threads=1)
    return model.predict(model.schema.encode(records)).tolist()


def load(server, name: str, url: Path | str) -> requests.Response:
    return requests.post(server.url + "/models", json={"model_name": name, "url": str(url)}, timeout=30)


def invoke(server, name: str, body: str, content_type="text/csv", accept="text/csv", **kw) -> requests.Response:
    path = f"/models/{urllib.parse.quote(name, safe='')}/invoke"
    headers = {"Content-Type": content_type, "Accept": accept, **kw.pop("headers", {})}
    return requests.post(server.url + path, data=body, headers=headers, timeout=30, **kw)


def floats(response: requests.Response) -> list[float]:
    return [float(x) for x in response.text.split()]


def unique(prefix: str = "m") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(
    scope="module",
    params=[("xgboost", "async"), ("linear", "async"), ("xgboost", "gthread")],
    ids=["xgboost", "linear", "xgboost-gthread"],
)
def server(request, tmp_path_factory):
    algorithm, front = request.param
    base = tmp_path_factory.mktemp("mme-server")  # no model/ at all: a multi-model endpoint has none
    env = {**MME, "SERVING_WORKER_CLASS": front}
    with LocalServer(algorithm, base, workers=2, env=env) as s:
        s.algorithm = algorithm
        yield s


# -- the contract ------------------------------------------------------------------------------------------------
def test_ping_is_healthy_without_any_model(server):
    r = requests.get(server.url + "/ping", timeout=5)
    assert r.status_code == 200 and r.content == b""


def test_load_get_invoke_unload(server, models, records, csv_body):
    url = models(server.algorithm)[3]
    name = unique()
    r = load(server, name, url)
    assert r.status_code == 200, r.text
    assert load(server, name, url).status_code == 409  # already loaded

    r = requests.get(f"{server.url}/models/{name}", timeout=5)
    assert r.status_code == 200 and r.json() == {"modelName": name, "modelUrl": str(url)}

    r = invoke(server, name, csv_body)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "text/csv"
    assert floats(r) == pytest.approx(expected(server.algorithm, url, records), rel=1e-6)

    r = requests.delete(f"{server.url}/models/{name}", timeout=5)
    assert r.status_code == 200, r.text
    for response in (
        requests.delete(f"{server.url}/models/{name}", timeout=5),
        requests.get(f"{server.url}/models/{name}", timeout=5),
        invoke(server, name, csv_body),
    ):
        assert response.status_code == 404, response.text
        assert response.text == f'model "{name}" is not loaded\n'


def test_every_worker_serves_a_model_another_worker_loaded_and_none_after_unload(server, models, records, csv_body):
    url = models(server.algorithm)[5]
    name = unique()
    assert load(server, name, url).status_code == 200
    want = expected(server.algorithm, url, records)
    # A new connection each time: gunicorn's workers share the accept queue, so both of them answer some.
    answers = [invoke(server, name, csv_body, headers={"Connection": "close"}) for _ in range(16)]
    assert [r.status_code for r in answers] == [200] * 16
    assert all(floats(r) == pytest.approx(want, rel=1e-6) for r in answers)
    assert requests.delete(f"{server.url}/models/{name}", timeout=5).status_code == 200
    after = [invoke(server, name, csv_body, headers={"Connection": "close"}).status_code for _ in range(16)]
    assert after == [404] * 16


def test_models_answer_with_their_own_predictions(server, models, records, csv_body):
    urls = models(server.algorithm)[:6]
    names = [unique() for _ in urls]
    for name, url in zip(names, urls, strict=True):
        assert load(server, name, url).status_code == 200
    for name, url in reversed(list(zip(names, urls, strict=True))):
        assert floats(invoke(server, name, csv_body)) == pytest.approx(expected(server.algorithm, url, records))
    for name in names:
        requests.delete(f"{server.url}/models/{name}", timeout=5)


def test_list_pages_through_every_model_in_name_order(server, models):
    url = models(server.algorithm)[0]
    prefix = unique("page")
    names = [f"{prefix}-{i:02d}" for i in range(7)]
    for name in reversed(names):
        assert load(server, name, url).status_code == 200
    seen, token, pages = [], None, 0
    while True:
        query = {"limit": "3", **({"next_page_token": token} if token else {})}
        r = requests.get(server.url + "/models", params=query, timeout=5)
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"] == "application/json"
        page = r.json()
        assert len(page["models"]) <= 3
        seen += [m["modelName"] for m in page["models"]]
        pages += 1
        token = page.get("nextPageToken")
        if token is None:
            break
    mine = [n for n in seen if n.startswith(prefix)]
    assert mine == names and seen == sorted(seen)
    assert pages == -(-len(seen) // 3)
    everything = requests.get(server.url + "/models", timeout=5).json()
    assert "nextPageToken" not in everything
    assert {"modelName": names[0], "modelUrl": str(url)} in everything["models"]
    for name in names:
        requests.delete(f"{server.url}/models/{name}", timeout=5)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", "query parameter limit: expected an integer in [1, 1000], received '0'"),
        ("limit=abc", "query parameter limit: expected an integer in [1, 1000], received 'abc'"),
        ("next_page_token=%25%25", "query parameter next_page_token: '%%' is not a token this server gave"),
    ],
)
def test_list_refuses_bad_paging(server, query, message):
    r = requests.get(f"{server.url}/models?{query}", timeout=5)
    assert (r.status_code, r.text) == (400, message + "\n")


def test_a_name_needing_percent_encoding(server, models, csv_body):
    name = f"{unique()}/a b%c.tar.gz"  # SageMaker's names are opaque: a TargetModel-like path must work too
    assert load(server, name, models(server.algorithm)[1]).status_code == 200
    assert invoke(server, name, csv_body).status_code == 200
    quoted = urllib.parse.quote(name, safe="")
    assert requests.get(f"{server.url}/models/{quoted}", timeout=5).json()["modelName"] == name
    assert requests.delete(f"{server.url}/models/{quoted}", timeout=5).status_code == 200


def test_load_refuses_bad_requests_with_the_culprit_named(server, models, tmp_path):
    url = models(server.algorithm)[0]
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "schema.json").write_text((url / "schema.json").read_text())
    cases = [
        (b"{not json", "the body is not JSON"),
        (b"[]", 'expected a JSON object {"model_name": ..., "url": ...}'),
        (json.dumps({"url": str(url)}).encode(), "field model_name: expected a non-empty string, received nothing"),
        (json.dumps({"model_name": "x", "url": 3}).encode(), "field url: expected a non-empty string, received int 3"),
        (json.dumps({"model_name": "x", "url": "models/m0"}).encode(), "field url: expected an absolute directory"),
        (json.dumps({"model_name": "x", "url": str(tmp_path / "nope")}).encode(), "is not a directory"),
        (json.dumps({"model_name": "x\n", "url": str(url)}).encode(), "no control characters"),
    ]
    for body, message in cases:
        r = requests.post(server.url + "/models", data=body, headers={"Content-Type": "application/json"}, timeout=5)
        assert r.status_code == 400, (body, r.text)
        assert message in r.text and r.text.count("\n") == 1, r.text
    # No model file: the plug-in's own one-line reason naming it, and the name is not left registered.
    name = unique()
    r = load(server, name, wrong)
    missing = str(wrong / registry.get(server.algorithm).MODEL_FILES[0])
    assert r.status_code == 400 and r.text.startswith(f'model "{name}": ') and missing in r.text, r.text
    assert requests.get(f"{server.url}/models/{name}", timeout=5).status_code == 404
    assert load(server, name, url).status_code == 200  # and the name can be used afterwards
    assert requests.delete(f"{server.url}/models/{name}", timeout=5).status_code == 200


def test_invoke_has_the_single_model_codecs_and_errors(server, models, records):
    name = unique()
    url = models(server.algorithm)[2]
    assert load(server, name, url).status_code == 200
    rows = records.to_numpy().tolist()
    r = invoke(server, name, json.dumps({"instances": [{"features": row} for row in rows]}), "application/json",
               "application/json")  # fmt: skip
    assert r.status_code == 200, r.text
    assert [p["score"] for p in r.json()["predictions"]] == pytest.approx(expected(server.algorithm, url, records))
    r = invoke(server, name, "1,2,3\n")
    assert (r.status_code, r.text) == (400, "line 1: expected 8 features, received 3\n")
    assert invoke(server, name, "x", content_type="application/x-foo").status_code == 415
    assert invoke(server, name, "20105,6,4,1,0,0,Buick,sedan", accept="application/x-foo").status_code == 406
    big = "20105,6,4,1,0,0,Buick,sedan\n" * 1000  # above the size answered on the event loop
    assert len(floats(invoke(server, name, big))) == 1000
    requests.delete(f"{server.url}/models/{name}", timeout=5)


def test_routes_and_methods(server):
    r = requests.post(server.url + "/invocations", data="1", headers={"Content-Type": "text/csv"}, timeout=5)
    assert r.status_code == 404 and "POST /models/{model_name}/invoke" in r.text
    assert requests.put(server.url + "/models", timeout=5).status_code == 405
    assert requests.get(server.url + "/models/x/invoke", timeout=5).status_code == 405
    assert requests.post(server.url + "/models/x", timeout=5).status_code == 405
    assert requests.get(server.url + "/models/a/b/c", timeout=5).status_code == 404


# -- memory ----------------------------------------------------------------------------------------------------
def test_least_recently_used_models_are_evicted_and_reloaded_transparently(
    trained, models, records, csv_body, tmp_path
):
    urls = models("xgboost")
    size = multimodel.files_size(urls[0])  # ~160 KiB; measured sizes are close
    budget_mib = 4.5 * size / 2**20  # room for about 4 of the 12
    env = {**MME, "SERVING_MME_MEMORY_MB": f"{budget_mib:.4f}"}
    with LocalServer("xgboost", tmp_path, workers=1, env=env) as server:
        names = [f"m{i}" for i in range(len(urls))]
        for name, url in zip(names, urls, strict=True):
            assert load(server, name, url).status_code == 200
        listed = [m["modelName"] for m in requests.get(server.url + "/models", timeout=5).json()["models"]]
        assert listed == sorted(names)  # evicted from memory, still loaded as far as SageMaker is concerned
        for _ in range(2):
            for name, url in zip(names, urls, strict=True):
                r = invoke(server, name, csv_body)
                assert r.status_code == 200, r.text
                assert floats(r) == pytest.approx(expected("xgboost", url, records))
        log = server.log()
    # Replay the worker's own account: after every load (and the evictions it caused) it held at most the budget.
    held, events = 0.0, re.findall(r'model "m\d+" (evicted|loaded (?:on use|from)).*?\(([\d.]+) MiB', log)
    for event, mib in events:
        held += float(mib) if event.startswith("loaded") else -float(mib)
        assert held <= budget_mib + 0.001 * len(events), (held, budget_mib)
    assert sum(e == "evicted" for e, _ in events) >= 12, log[-3000:]
    assert sum(e == "loaded on use" for e, _ in events) >= 12, log[-3000:]


def test_a_model_larger_than_the_budget_is_a_507_and_not_loaded(models, tmp_path):
    env = {**MME, "SERVING_MME_MEMORY_MB": "0.01"}
    with LocalServer("xgboost", tmp_path, workers=1, env=env) as server:
        r = load(server, "big", models("xgboost")[0])
        assert r.status_code == 507, r.text
        assert re.fullmatch(
            r'model "big" takes [\d.]+ MiB, more than a worker\'s budget of [\d.]+ MiB '
            r"\(SERVING_MME_MEMORY_MB / workers\)\n",
            r.text,
        ), r.text
        assert requests.get(server.url + "/models/big", timeout=5).status_code == 404


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SAGEMAKER_MULTI_MODEL": "yes"}, "environment variable SAGEMAKER_MULTI_MODEL: expected true or false"),
        ({**MME, "SERVING_MME_MEMORY_MB": "-1"}, "environment variable SERVING_MME_MEMORY_MB: expected a number"),
    ],
)
def test_bad_settings_stop_the_server_with_the_reason(tmp_path, env, message):
    server = LocalServer("xgboost", tmp_path, env=env)
    with pytest.raises(RuntimeError, match="exited with 1") as failure:
        server.start(timeout=30)
    assert message in str(failure.value)


def test_bad_serving_settings_stop_the_server_at_start(tmp_path):
    """As for a single model: a setting every model would trip on is refused before any worker starts."""
    env = {**MME, "SERVING_UNKNOWN_CATEGORY": "ignore"}
    with pytest.raises(RuntimeError, match="server exited with 1") as e:
        LocalServer("xgboost", tmp_path, env=env).start()
    assert "environment variable SERVING_UNKNOWN_CATEGORY: received 'ignore', expected one of error, missing" in str(
        e.value
    )


# -- units -------------------------------------------------------------------------------------------------------
def test_registry_add_is_exclusive_and_remove_reports_absence(tmp_path):
    a, b = Registry(tmp_path), Registry(tmp_path)  # two workers' views of one directory
    assert a.add("x", "/one") is True
    assert b.add("x", "/two") is False
    assert b.get("x") == {"modelName": "x", "modelUrl": "/one"}
    first = a.identity("x")
    assert a.remove("x") is True and b.remove("x") is False
    assert b.add("x", "/two") is True and a.identity("x") != first  # reloaded: workers see a new identity
    assert [e["modelName"] for e in a.entries()] == ["x"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary files left


def test_budget_defaults_to_half_the_container_memory():
    assert multimodel.budget_bytes({}) == multimodel.container_memory() // 2
    assert multimodel.budget_bytes({"SERVING_MME_MEMORY_MB": "1.5"}) == int(1.5 * 2**20)


def test_eviction_keeps_the_most_recently_used(tmp_path, models, monkeypatch):
    monkeypatch.setattr(multimodel, "rss", lambda: 0)  # sizes are then the files' sizes: a deterministic budget
    urls = models("linear")[:3]
    size = max(multimodel.files_size(u) for u in urls)
    mm = MultiModel(tmp_path, env={"ALGORITHM": "linear"}, threads=1, budget=int(2.5 * size))  # room for two
    for i, url in enumerate(urls[:3]):
        mm.registry.add(f"m{i}", str(url))
    mm.served("m0")
    mm.served("m1")
    assert mm.cached("m0") is not None  # m0 used most recently: m1 is the least recently used now
    mm.served("m2")
    assert [n for n in ("m0", "m1", "m2") if mm.cached(n) is not None] == ["m0", "m2"]
    assert mm.memory() <= mm.budget
    mm.served("m1")  # still loaded as far as SageMaker knows: loaded again on use, evicting m0
    assert [n for n in ("m0", "m1", "m2") if mm.cached(n) is not None] == ["m1", "m2"]


def test_a_container_short_of_memory_answers_507_and_keeps_nothing(tmp_path, models, monkeypatch):
    monkeypatch.setattr(multimodel, "available_memory", lambda: 1000)  # bytes: less than any model's files
    mm = MultiModel(tmp_path / "registry", env={"ALGORITHM": "linear"}, threads=1, budget=2**30)
    (tmp_path / "registry").mkdir()
    body = json.dumps({"model_name": "m", "url": str(models("linear")[0])}).encode()
    status, _, text = mm.load_request(body)
    assert status == 507 and text.decode().startswith('model "m": the container has 0.0 MiB free'), text
    assert mm.registry.get("m") is None and mm.memory() == 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.binary(max_size=200)
    | st.text(max_size=200).map(str.encode)
    | st.dictionaries(
        st.sampled_from(["model_name", "url", "other"]),
        st.none() | st.integers() | st.text(max_size=30) | st.sampled_from(["/", "/proc", "/etc/passwd", "/tmp"]),
    ).map(lambda d: json.dumps(d).encode()),
    name=st.text(min_size=1, max_size=40),
)
def test_random_requests_never_5xx(server, body, name):
    """Whatever a client sends to /models and to a model's routes: an answer naming the problem, never a 5xx."""
    r = requests.post(server.url + "/models", data=body, headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code < 500, r.text
    quoted = urllib.parse.quote(name, safe="")
    for method in ("GET", "DELETE"):
        assert requests.request(method, f"{server.url}/models/{quoted}", timeout=10).status_code < 500
    assert invoke(server, name, body.decode("utf-8", "replace")).status_code < 500
