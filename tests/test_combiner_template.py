"""pipelines/template.yaml's real-time API against serving/combiner.py and the training pipeline: the route and its
integration reach the combiner's handler, API Gateway may invoke it, the function sets only variables the module
reads, the package is combiner.py alone, and the role names exactly the endpoints and SSM parameters the training
pipeline creates. Static: the template is decoded, not deployed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from serving import combiner
from tests.cfn_template import PIPELINES, sub


def training_name(key: str, algorithm: str) -> str:
    """A name the training pipeline derives, e.g. "Endpoint" -> "${NamePrefix}-xgboost", from its definition."""
    definition = json.loads((PIPELINES / "definitions" / "training.asl.json").read_text())
    found = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == f"{key}.$":
                    found.append(v)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(definition)
    assert len(set(found)) == 1, found
    match = re.fullmatch(r"States\.Format\('([^']*)', \$\.NamePrefix, \$\.Algorithm\)", found[0])
    assert match, found[0]
    return match.group(1).format("${NamePrefix}", algorithm)


def route(resources) -> tuple[str, str, dict[str, Any]]:
    """(method, path, integration) of the API's one route."""
    api = resources["CombinerApi"]
    assert api["Type"] == "AWS::Serverless::HttpApi"
    paths = api["Properties"]["DefinitionBody"]["paths"]
    routes = [(m.upper(), p, op) for p, ops in paths.items() for m, op in ops.items()]
    assert len(routes) == 1, routes
    method, path, operation = routes[0]
    return method, path, operation["x-amazon-apigateway-integration"]


# -- the function and its package ------------------------------------------------------------------------------------
def test_handler_is_the_combiners(resources):
    props = resources["CombinerFunction"]["Properties"]
    module, _, attr = props["Handler"].partition(".")
    assert (PIPELINES / props["CodeUri"] / f"{module}.py").samefile(combiner.__file__)
    assert getattr(combiner, attr) is combiner.handler
    assert props["Runtime"] == "python3.11"


def test_package_is_combiner_py_alone(resources, tmp_path):
    """sam build's makefile method runs `make build-<LogicalId>` in CodeUri with ARTIFACTS_DIR set: do the same."""
    function = resources["CombinerFunction"]
    assert function["Metadata"]["BuildMethod"] == "makefile"
    if not shutil.which("make"):
        pytest.skip("make not installed")
    source = tmp_path / "source"
    shutil.copytree(PIPELINES / function["Properties"]["CodeUri"], source)  # sam build copies it to a scratch dir
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    subprocess.run(["make", "-C", str(source), f"ARTIFACTS_DIR={artifacts}", "build-CombinerFunction"], check=True)
    assert [p.name for p in artifacts.iterdir()] == ["combiner.py"]
    assert (artifacts / "combiner.py").read_bytes() == Path(combiner.__file__).read_bytes()


def test_environment_is_what_the_module_reads(resources):
    variables = resources["CombinerFunction"]["Properties"]["Environment"]["Variables"]
    assert set(variables) <= set(combiner.ENVIRONMENT)
    for model in combiner.MODELS:
        assert sub(variables[f"{model.upper()}_DEPLOYMENT_PARAMETER"]) == training_name("DeploymentParameter", model)
        assert f"{model.upper()}_ENDPOINT" not in variables  # one or the other (resolve_endpoints refuses both)
    assert variables["COMBINE_RULE"] == {"Ref": "CombineRule"}


def test_environment_tuple_lists_every_variable_the_module_reads():
    source = Path(combiner.__file__).read_text()
    read = set()
    for is_f, name in re.findall(r'(?:env|os\.environ)\.get\(\s*(f?)"([^"]+)"', source):
        names = [name.replace("{model.upper()}", m.upper()) for m in combiner.MODELS] if is_f else [name]
        read.update(n for n in names if not n.startswith("AWS_"))  # the Lambda runtime's own, not configuration
    assert read == set(combiner.ENVIRONMENT)


def test_combine_rule_parameter_offers_the_modules_rules(template):
    parameter = template["Parameters"]["CombineRule"]
    assert parameter["AllowedValues"] == list(combiner.RULES)
    assert parameter["Default"] in combiner.RULES


# -- the API, its route, integration and permission ------------------------------------------------------------------
def test_route_integrates_the_combiner_function(resources):
    method, path, integration = route(resources)
    assert (method, path) == ("POST", "/predict")
    assert integration["type"] == "aws_proxy"
    assert integration["httpMethod"] == "POST"  # Lambda's Invoke is always a POST, whatever the route's method
    assert "/functions/${CombinerFunction.Arn}/invocations" in sub(integration["uri"])
    assert integration["payloadFormatVersion"] == "2.0"
    assert integration["timeoutInMillis"] <= 30000  # HTTP API's maximum
    timeout_s = resources["CombinerFunction"]["Properties"]["Timeout"]
    assert timeout_s * 1000 <= integration["timeoutInMillis"]


def test_handler_takes_the_routes_event(resources):
    """The payload format 2.0 event of this route parses to the method the handler serves."""
    method, path, _ = route(resources)
    event = {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": f"/v1{path}",
        "headers": {"content-type": "text/csv"},
        "requestContext": {"http": {"method": method, "path": f"/v1{path}"}, "requestId": "r-1"},
        "body": "1,2",
        "isBase64Encoded": False,
    }
    assert combiner.parse_event(event) == ("POST", {"content-type": "text/csv"}, b"1,2")


def test_api_gateway_may_invoke_the_function_on_that_route(resources):
    method, path, _ = route(resources)
    permissions = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::Permission"]
    ours = [p for p in permissions if p["FunctionName"] in ({"Fn::GetAtt": ["CombinerFunction", "Arn"]},
                                                             {"Ref": "CombinerFunction"})]  # fmt: skip
    assert len(ours) == 1
    permission = ours[0]
    assert permission["Action"] == "lambda:InvokeFunction"
    assert permission["Principal"] == "apigateway.amazonaws.com"
    assert sub(permission["SourceArn"]).endswith(f":execute-api:${{AWS::Region}}:${{AWS::AccountId}}:"
                                                 f"${{CombinerApi}}/*/{method}{path}")  # fmt: skip


def test_stage_throttling_and_access_logs(template, resources):
    props = resources["CombinerApi"]["Properties"]
    assert props["StageName"] == {"Ref": "ApiStageName"}
    routes = props["DefaultRouteSettings"]
    assert routes["ThrottlingBurstLimit"] == {"Ref": "ApiThrottlingBurstLimit"}
    assert routes["ThrottlingRateLimit"] == {"Ref": "ApiThrottlingRateLimit"}
    for name in ("ApiThrottlingBurstLimit", "ApiThrottlingRateLimit"):
        assert template["Parameters"][name]["Type"] == "Number"
    logs = props["AccessLogSettings"]
    group = logs["DestinationArn"]["Fn::GetAtt"]
    assert group[1] == "Arn" and resources[group[0]]["Type"] == "AWS::Logs::LogGroup"
    assert "$context.requestId" in logs["Format"]
    json.loads(logs["Format"])  # one JSON document per request


def test_output_is_the_routes_url(template, resources):
    _, path, _ = route(resources)
    url = sub(template["Outputs"]["ApiUrl"]["Value"])
    assert url == f"https://${{CombinerApi}}.execute-api.${{AWS::Region}}.${{AWS::URLSuffix}}/${{ApiStageName}}{path}"


# -- what the function may do ----------------------------------------------------------------------------------------
def test_role_invokes_exactly_the_pipelines_endpoints_and_reads_exactly_their_records(resources):
    assert resources["CombinerFunction"]["Properties"]["Role"] == {"Fn::GetAtt": ["CombinerRole", "Arn"]}
    statements = [
        s for p in resources["CombinerRole"]["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]
    ]
    assert all(s["Effect"] == "Allow" for s in statements)
    by_action: dict[str, set[str]] = {}
    for s in statements:
        actions = [s["Action"]] if isinstance(s["Action"], str) else s["Action"]
        targets = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
        for action in actions:
            by_action.setdefault(action, set()).update(sub(t) for t in targets)
    arn = "arn:${AWS::Partition}:{service}:${AWS::Region}:${AWS::AccountId}:{resource}"
    assert by_action.pop("sagemaker:InvokeEndpoint") == {
        arn.replace("{service}", "sagemaker").replace("{resource}", "endpoint/" + training_name("Endpoint", m))
        for m in combiner.MODELS
    }
    assert by_action.pop("ssm:GetParameter") == {
        arn.replace("{service}", "ssm").replace("{resource}", "parameter" + training_name("DeploymentParameter", m))
        for m in combiner.MODELS
    }
    assert by_action == {
        "logs:CreateLogStream": {"${CombinerLogGroup.Arn}"},
        "logs:PutLogEvents": {"${CombinerLogGroup.Arn}"},
    }
    assert training_name("Endpoint", "xgboost") == "${NamePrefix}-xgboost"  # the names the brief promises


# -- end to end, statically deployed: the template's environment, the pipeline's records, the role's resources -------
def test_deployed_function_calls_only_what_its_role_allows(template, resources, monkeypatch):
    """The function as the template configures it, with the records the pipeline writes (moto), calls exactly the
    SSM parameters and endpoints its role names, once NamePrefix, partition, region and account are filled in."""
    boto3 = pytest.importorskip("boto3")
    moto = pytest.importorskip("moto")
    from botocore.stub import Stubber

    from tests.test_combiner_ssm import body_of, event

    values = {
        "NamePrefix": "cars",
        "AWS::Partition": "aws",
        "AWS::Region": "eu-west-1",
        "AWS::AccountId": "123456789012",
    }
    fill = lambda text: re.sub(r"\$\{([\w:]+)\}", lambda m: values[m.group(1)], text)  # noqa: E731
    for name in ("AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "eu-west-1" if name == "AWS_DEFAULT_REGION" else "testing")
    for name in combiner.ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    for name, value in resources["CombinerFunction"]["Properties"]["Environment"]["Variables"].items():
        if "Ref" in value:  # a parameter: its default
            monkeypatch.setenv(name, str(template["Parameters"][value["Ref"]]["Default"]))
        else:
            monkeypatch.setenv(name, fill(sub(value)))
    for attr, empty in (("_ssm", []), ("_deployments", {}), ("_clients", {})):
        monkeypatch.setattr(combiner, attr, empty)
    allowed: dict[str, set[str]] = {}
    for statement in (
        s for p in resources["CombinerRole"]["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]
    ):
        targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        allowed.setdefault(statement["Action"] if isinstance(statement["Action"], str) else "logs", set()).update(
            fill(sub(t)) for t in targets
        )

    read: list[str] = []
    invoked: list[str] = []
    with moto.mock_aws():
        ssm = boto3.client("ssm", region_name="eu-west-1")
        for model in combiner.MODELS:  # what the pipeline's "Deployment record" + "Export deployment" states write
            ssm.put_parameter(
                Name=fill(training_name("DeploymentParameter", model)),
                Value=json.dumps({"Algorithm": model, "EndpointName": fill(training_name("Endpoint", model))}),
                Type="String",
            )
        combiner._ssm_client().meta.events.register(
            "before-parameter-build.ssm.GetParameter", lambda params, **_: read.append(params["Name"])
        )
        runtime = combiner._runtime_client(None)
        runtime.meta.events.register(
            "before-parameter-build.sagemaker-runtime.InvokeEndpoint",
            lambda params, **_: invoked.append(params["EndpointName"]),
        )
        with Stubber(runtime) as stub:
            for _ in combiner.MODELS:
                stub.add_response("invoke_endpoint", {"Body": body_of({"predictions": [{"score": 1.0}]})})
            response = combiner.handler(event())
    assert response["statusCode"] == 200, response["body"]
    arn = "arn:aws:{}:eu-west-1:123456789012:{}"
    assert {arn.format("ssm", "parameter" + name) for name in read} == allowed["ssm:GetParameter"]
    assert {arn.format("sagemaker", "endpoint/" + name) for name in invoked} == allowed["sagemaker:InvokeEndpoint"]
    assert len(read) == len(invoked) == len(combiner.MODELS)
