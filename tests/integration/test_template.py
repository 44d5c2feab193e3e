"""The deployable template (`make package`): tables, KMS key, IAM, environment, sizes, schedule, cfn-lint.

`make package` runs once per test session (shared by pytest-xdist workers); every test reads its output, so a
refactor cannot silently drop a table, a permission or a variable. The expected values are written out here on
purpose instead of being imported from infra/render_template.py, which would make the checks tautological.
"""

from __future__ import annotations

import copy
import fcntl
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CFN_LINT = Path(sys.executable).parent / "cfn-lint"  # the .venv's, pinned in requirements-dev.txt
TABLES = json.loads((ROOT / "infra" / "tables.json").read_text())["tables"]
CHALICE_CONFIG = json.loads((ROOT / ".chalice" / "config.json").read_text())
STAGE = "prod"
STAGE_CONFIG = CHALICE_CONFIG["stages"][STAGE]
FUNCTIONS = ("APIHandler", "ScheduledTick", "WebsocketConnect", "WebsocketMessage", "WebsocketDisconnect",
             "WebhookDispatch")
# The functions that kick the webhook relay: an inline policy may invoke WebhookDispatch, and nothing else may.
KICKING = ("APIHandler", "ScheduledTick")
TABLE_ROLES = ("catalog", "locks", "connections", "events", "webhooks")

sys.path.insert(0, str(ROOT / "infra"))
import render_template  # noqa: E402

pytestmark = pytest.mark.timeout(300)


# --- the package, built once --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make package` into a private directory (never the developer's build/), once for all xdist workers."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    out = shared / "model-catalog-package"
    with open(shared / "model-catalog-package.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done, failed = out / ".done", shared / "model-catalog-package.failed"
        if failed.exists():
            pytest.fail(failed.read_text())
        if not done.exists():
            result = subprocess.run(
                ["make", "--no-print-directory", "package", f"BUILD_DIR={out}", f"CHALICE_STAGE={STAGE}"],
                cwd=ROOT, capture_output=True, text=True, timeout=280,
                env={**os.environ, "MAKEFLAGS": ""},
            )
            if result.returncode != 0:
                output = f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
                message = f"make package failed ({result.returncode}):\n{output}"
                failed.write_text(message)
                pytest.fail(message)
            done.touch()
    return out


@pytest.fixture(scope="session")
def template(build_dir: Path) -> dict[str, Any]:
    return render_template.load_cfn_yaml(build_dir / "sam.yaml")


@pytest.fixture(scope="session")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]


def _properties(resources: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return resources[logical_id]["Properties"]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _get_att_arn(logical_id: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


# --- tables -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", TABLE_ROLES)
def test_each_table_is_declared_from_the_schema_file(resources: dict[str, Any], role: str) -> None:
    spec = TABLES[role]
    table = resources[spec["logical_id"]]
    assert table["Type"] == "AWS::DynamoDB::Table"
    properties = table["Properties"]
    assert properties["KeySchema"] == spec["key_schema"]
    assert properties["AttributeDefinitions"] == spec["attribute_definitions"]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert "ProvisionedThroughput" not in properties
    assert "TableName" not in properties, "names come from the stack, so two stages can share an account"


def test_the_schema_file_declares_exactly_these_tables() -> None:
    assert set(TABLES) == set(TABLE_ROLES)


def test_connections_and_events_expire_by_ttl(resources: dict[str, Any]) -> None:
    ttl = {
        role: _properties(resources, TABLES[role]["logical_id"]).get("TimeToLiveSpecification")
        for role in TABLE_ROLES
    }
    assert ttl == {
        "catalog": None,
        "locks": None,
        "connections": {"AttributeName": "expires_at", "Enabled": True},
        "events": {"AttributeName": "expires_at", "Enabled": True},
        "webhooks": {"AttributeName": "expires_at", "Enabled": True},
    }


def test_catalog_has_point_in_time_recovery_and_outlives_the_stack(resources: dict[str, Any]) -> None:
    catalog = resources[TABLES["catalog"]["logical_id"]]
    assert catalog["Properties"]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert catalog["DeletionPolicy"] == catalog["UpdateReplacePolicy"] == "Retain"
    for role in ("locks", "connections", "events"):
        assert "PointInTimeRecoverySpecification" not in _properties(resources, TABLES[role]["logical_id"])
    # Webhook endpoints (with their encrypted secrets) and pending retries must survive too.
    webhooks = resources[TABLES["webhooks"]["logical_id"]]
    assert webhooks["Properties"]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert webhooks["DeletionPolicy"] == "Retain"
    assert [index["IndexName"] for index in webhooks["Properties"]["GlobalSecondaryIndexes"]] == ["due"]


def test_function_environment_names_every_table_by_reference(resources: dict[str, Any]) -> None:
    expected = {
        "MODEL_CATALOG_CATALOG_TABLE": {"Ref": "CatalogTable"},
        "MODEL_CATALOG_LOCKS_TABLE": {"Ref": "LocksTable"},
        "MODEL_CATALOG_CONNECTIONS_TABLE": {"Ref": "ConnectionsTable"},
        "MODEL_CATALOG_EVENTS_TABLE": {"Ref": "EventsTable"},
        "MODEL_CATALOG_WEBHOOKS_TABLE": {"Ref": "WebhooksTable"},
    }
    for function in FUNCTIONS:
        variables = _properties(resources, function)["Environment"]["Variables"]
        assert {name: variables.get(name) for name in expected} == expected, function


# --- KMS key and secrets ----------------------------------------------------------------------------------------


def test_oauth_token_key_rotates_and_is_kept_with_the_catalog(resources: dict[str, Any]) -> None:
    key = resources["OAuthTokenKey"]
    assert key["Type"] == "AWS::KMS::Key"
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["Properties"]["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert key["DeletionPolicy"] == "Retain", "the retained catalog's tokens need the key"
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    principals = [statement["Principal"] for statement in statements]
    assert principals == [{"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}]


def test_api_token_is_generated_into_secrets_manager(resources: dict[str, Any]) -> None:
    secret = resources["ApiTokenSecret"]
    assert secret["Type"] == "AWS::SecretsManager::Secret"
    generated = secret["Properties"]["GenerateSecretString"]
    assert generated["PasswordLength"] >= 32
    assert "SecretStringTemplate" not in generated, "the API token is read as the plain SecretString"


# --- IAM ----------------------------------------------------------------------------------------------------


def _grants(statements: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """action -> resources it is allowed on (all statements are Allow)."""
    grants: dict[str, list[Any]] = {}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        for action in _as_list(statement["Action"]):
            grants.setdefault(action, []).extend(_as_list(statement["Resource"]))
    return grants


def _access_statements(resources: dict[str, Any]) -> list[dict[str, Any]]:
    policy = resources["AccessPolicy"]
    assert policy["Type"] == "AWS::IAM::ManagedPolicy"
    return policy["Properties"]["PolicyDocument"]["Statement"]


EXPECTED_DYNAMODB_ACTIONS = {
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",  # model chunks, read by key
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",  # the fence of garbage collection's delete transactions
}
TABLE_ARNS = [_get_att_arn(TABLES[role]["logical_id"]) for role in TABLE_ROLES] + [
    {"Fn::Sub": "${WebhooksTable.Arn}/index/*"}  # the due-retries index
]
EVENT_BUS = STAGE_CONFIG["environment_variables"]["MODEL_CATALOG_EVENT_BUS"]


def test_access_policy_grants_exactly_the_expected_actions_on_exactly_these_resources(
    resources: dict[str, Any],
) -> None:
    grants = _grants(_access_statements(resources))
    api_stage = STAGE_CONFIG["api_gateway_stage"]
    arn = "arn:${AWS::Partition}"
    expected: dict[str, list[Any]] = {action: TABLE_ARNS for action in EXPECTED_DYNAMODB_ACTIONS}
    expected.update(
        {
            "dynamodb:Scan": [_get_att_arn("ConnectionsTable")],
            "execute-api:ManageConnections": [
                {"Fn::Sub": f"{arn}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{WebsocketAPI}}/"
                            f"{api_stage}/*/@connections/*"}
            ],
            "kms:Encrypt": [_get_att_arn("OAuthTokenKey")],
            "kms:Decrypt": [_get_att_arn("OAuthTokenKey")],
            "secretsmanager:GetSecretValue": [
                {"Ref": "ApiTokenSecret"},
                {"Fn::Sub": f"{arn}:secretsmanager:${{AWS::Region}}:${{AWS::AccountId}}:secret:"
                            "${ProviderSecretsPrefix}*"},
            ],
            "ssm:GetParameter": [
                {"Fn::Sub": f"{arn}:ssm:${{AWS::Region}}:${{AWS::AccountId}}:parameter${{ProviderParametersPath}}*"}
            ],
            "events:PutEvents": [
                {"Fn::Sub": f"{arn}:events:${{AWS::Region}}:${{AWS::AccountId}}:event-bus/{EVENT_BUS}"}
            ],
        }
    )
    assert sorted(grants) == sorted(expected)
    for action, allowed in expected.items():
        assert sorted(map(json.dumps, grants[action])) == sorted(map(json.dumps, allowed)), action


def test_transactions_are_authorized_by_their_item_actions(resources: dict[str, Any]) -> None:
    # TransactWriteItems has no IAM action of its own: its Put/Update items need PutItem/UpdateItem on their tables.
    grants = _grants(_access_statements(resources))
    assert "dynamodb:TransactWriteItems" not in grants
    for action in ("dynamodb:PutItem", "dynamodb:UpdateItem"):
        for table in ("CatalogTable", "LocksTable", "EventsTable"):
            assert _get_att_arn(table) in grants[action]


def _all_policy_documents(resources: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    documents = [("AccessPolicy", resources["AccessPolicy"]["Properties"]["PolicyDocument"])]
    for logical_id, resource in resources.items():
        if resource.get("Type") == "AWS::IAM::Role":
            for policy in resource["Properties"].get("Policies", []):
                documents.append((f"{logical_id}/{policy['PolicyName']}", policy["PolicyDocument"]))
    return documents


def test_no_policy_allows_wildcard_resources_or_actions(resources: dict[str, Any]) -> None:
    documents = _all_policy_documents(resources)
    assert len(documents) == 1 + len(FUNCTIONS) + len(KICKING)
    for name, document in documents:
        for statement in document["Statement"]:
            assert statement["Effect"] == "Allow", name
            assert "*" not in _as_list(statement["Resource"]), name
            for action in _as_list(statement["Action"]):
                assert "*" not in action, f"{name}: {action}"


def test_every_function_has_its_own_role_with_the_access_policy_and_only_its_log_group(
    resources: dict[str, Any],
) -> None:
    functions = sorted(k for k, v in resources.items() if v["Type"] == "AWS::Serverless::Function")
    assert functions == sorted(FUNCTIONS)
    roles = set()
    for function in FUNCTIONS:
        role_id = _properties(resources, function)["Role"]["Fn::GetAtt"][0]
        roles.add(role_id)
        role = _properties(resources, role_id)
        assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}
        assert role["ManagedPolicyArns"] == [{"Ref": "AccessPolicy"}]
        inline, *kick = role["Policies"]
        assert _grants(inline["PolicyDocument"]["Statement"]) == {
            "logs:CreateLogStream": [_get_att_arn("FunctionLogGroup")],
            "logs:PutLogEvents": [_get_att_arn("FunctionLogGroup")],
        }
        # Only the functions that kick the webhook relay may invoke it, and only it, asynchronously or not.
        assert [_grants(p["PolicyDocument"]["Statement"]) for p in kick] == (
            [{"lambda:InvokeFunction": [_get_att_arn("WebhookDispatch")]}] if function in KICKING else []
        ), function
        variables = _properties(resources, function)["Environment"]["Variables"]
        expected_kick = {"Ref": "WebhookDispatch"} if function in KICKING else None
        assert variables.get("MODEL_CATALOG_WEBHOOK_FUNCTION") == expected_kick, function
        assert _properties(resources, function)["LoggingConfig"]["LogGroup"] == {"Ref": "FunctionLogGroup"}
    assert len(roles) == len(FUNCTIONS)


# --- the policy against the code --------------------------------------------------------------------------------

# Deployed code = chalicelib/, all of it: the local stack (devstack/) and the CLI (catalog_cli/) live
# outside it and are not in the bundle (test_bundle_holds_only_the_deployed_code).
CLIENT_RECEIVER = re.compile(r"(?i)(client|dynamodb|kms|ssm|secret)")
CALL = re.compile(r"\.\s*(?P<operation>\w+)\s*\(")
RECEIVER = re.compile(r"(\w+(?:\([^()]*\))?)\s*$")  # what precedes the dot: `_client`, `client("ssm")`
TRANSACT_ITEM = re.compile(r"[\"'](Put|Update|Delete|ConditionCheck)[\"']\s*:\s*\{")
TRANSACT_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}
# Where the IAM action is not named like the API operation.
IAM_ACTION_NAMES = {"lambda:Invoke": "lambda:InvokeFunction"}
IAM_PREFIX = {"dynamodb": "dynamodb", "kms": "kms", "secretsmanager": "secretsmanager", "ssm": "ssm",
              "events": "events", "lambda": "lambda"}


def _operations() -> dict[str, dict[str, str]]:
    """snake_case operation -> {service: IAM action}, from botocore's own service models."""
    import botocore.session
    from botocore import xform_name

    session = botocore.session.get_session()
    operations: dict[str, dict[str, str]] = {}
    for service, prefix in IAM_PREFIX.items():
        for name in session.get_service_model(service).operation_names:
            action = f"{prefix}:{name}"
            operations.setdefault(xform_name(name), {})[service] = IAM_ACTION_NAMES.get(action, action)
    for name in session.get_service_model("apigatewaymanagementapi").operation_names:
        operations.setdefault(xform_name(name), {})["apigatewaymanagementapi"] = "execute-api:ManageConnections"
    return operations


def _actions_used_by_the_code() -> tuple[set[str], list[str]]:
    operations = _operations()
    used: set[str] = set()
    where: list[str] = []
    transact_items: set[str] = set()
    transacts = False
    for path in sorted((ROOT / "chalicelib").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        source = path.read_text()
        transact_items.update(TRANSACT_ITEM.findall(source))
        if "websocket_api" in source and re.search(r"\.(send|close)\(", source):
            used.add("execute-api:ManageConnections")
        for match in CALL.finditer(source):
            operation = match["operation"]
            before = RECEIVER.search(source[max(0, match.start() - 80) : match.start()])
            receiver = before.group(1) if before else ""
            if operation not in operations or not CLIENT_RECEIVER.search(receiver):
                continue
            if operation == "transact_write_items":
                transacts = True
                continue
            if operation == "transact_get_items":
                used.add("dynamodb:GetItem")
                continue
            actions = operations[operation]
            used.add(next(iter(actions.values())) if len(actions) == 1 else "|".join(sorted(actions.values())))
            where.append(f"{relative}: {receiver}.{operation}")
    if transacts:
        used.update(TRANSACT_ACTIONS[item] for item in transact_items)
    return used, where


def _granted_to_the_code(resources: dict[str, Any]) -> set[str]:
    """The shared access policy, plus the kick policy of the functions that invoke WebhookDispatch."""
    kick = [statement for name, document in _all_policy_documents(resources) if name.endswith("/kick-webhook-dispatch")
            for statement in document["Statement"]]
    return set(_grants(_access_statements(resources))) | set(_grants(kick))


def test_the_code_needs_no_action_the_policy_does_not_grant(resources: dict[str, Any]) -> None:
    used, where = _actions_used_by_the_code()
    granted = _granted_to_the_code(resources)
    missing = {action for action in used if not (set(action.split("|")) & granted)}
    assert not missing, f"the deployed code calls {sorted(missing)} but the policy does not grant it; calls: {where}"


def test_every_granted_action_is_used_by_the_code(resources: dict[str, Any]) -> None:
    used, where = _actions_used_by_the_code()
    granted = _granted_to_the_code(resources)
    unused = {action for action in granted if not any(action in alternatives.split("|") for alternatives in used)}
    assert not unused, f"the policy grants {sorted(unused)}, which no deployed code calls; calls: {where}"


def test_the_code_scan_sees_the_calls_it_must_see() -> None:
    # Guards the scanner itself: these calls exist in the code today, so an empty scan is a broken scan.
    used, _ = _actions_used_by_the_code()
    assert {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:BatchWriteItem", "dynamodb:UpdateItem",
            "kms:Encrypt", "secretsmanager:GetSecretValue", "ssm:GetParameter", "execute-api:ManageConnections",
            "events:PutEvents", "lambda:InvokeFunction"} <= used


# --- environment, sizes, schedule -----------------------------------------------------------------------------


def test_every_function_knows_the_websocket_api_key_secret_and_config(resources: dict[str, Any]) -> None:
    stage_name = _properties(resources, "WebsocketAPIStage")["StageName"]
    config_path = STAGE_CONFIG["environment_variables"]["MODEL_CATALOG_CONFIG"]
    assert (ROOT / config_path).is_file()
    for function in FUNCTIONS:
        variables = _properties(resources, function)["Environment"]["Variables"]
        assert variables["MODEL_CATALOG_WS_API_ID"] == {"Ref": "WebsocketAPI"}, function
        assert variables["MODEL_CATALOG_WS_STAGE"] == stage_name, function
        assert variables["MODEL_CATALOG_KMS_KEY_ID"] == {"Ref": "OAuthTokenKey"}, function
        assert variables["MODEL_CATALOG_API_TOKEN_SECRET_ID"] == {"Ref": "ApiTokenSecret"}, function
        assert variables["MODEL_CATALOG_CONFIG"] == config_path, function
        assert variables["MODEL_CATALOG_ALLOW_PRIVATE_URLS"] == "0", function
        assert "MODEL_CATALOG_API_TOKEN" not in variables, "a plain token would be readable from the stack"
        assert "MODEL_CATALOG_DYNAMODB_ENDPOINT" not in variables, function


def test_runtime_is_a_supported_python(resources: dict[str, Any]) -> None:
    for function in FUNCTIONS:
        runtime = _properties(resources, function)["Runtime"]
        assert re.fullmatch(r"python3\.1[2-9]", runtime), f"{function}: {runtime}"


def test_function_timeouts_fit_the_refresh_deadlines(resources: dict[str, Any]) -> None:
    from chalicelib.catalog_config import CatalogOptions

    options = CatalogOptions()
    api = _properties(resources, "APIHandler")
    scheduled = _properties(resources, "ScheduledTick")
    # A manual refresh waits for the lock, runs to its deadline, commits (≤ 4 s) and fans out inline (≤ 3 s, at most
    # 1,000 connections), inside API Gateway's 29 s.
    assert options.lock_wait_ms + options.manual_run_deadline_ms + 4_000 + 3_000 <= 29_000
    assert api["Timeout"] * 1000 >= options.lock_wait_ms + options.manual_run_deadline_ms
    assert scheduled["Timeout"] * 1000 > options.scheduled_run_deadline_ms
    assert scheduled["Timeout"] == 300
    assert scheduled["MemorySize"] == STAGE_CONFIG["lambda_functions"]["scheduled_tick"]["lambda_memory_size"]
    assert api["MemorySize"] == STAGE_CONFIG["lambda_functions"]["api_handler"]["lambda_memory_size"]


def test_both_api_stages_are_throttled(template: dict[str, Any], resources: dict[str, Any]) -> None:
    [settings] = _properties(resources, "RestAPI")["MethodSettings"]
    assert settings == {"ResourcePath": "/*", "HttpMethod": "*",
                        "ThrottlingRateLimit": {"Ref": "ApiThrottlingRateLimit"},
                        "ThrottlingBurstLimit": {"Ref": "ApiThrottlingBurstLimit"}}
    assert _properties(resources, "WebsocketAPIStage")["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": {"Ref": "WebsocketThrottlingRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "WebsocketThrottlingBurstLimit"},
    }
    parameters = template["Parameters"]
    assert (parameters["ApiThrottlingRateLimit"]["Default"], parameters["ApiThrottlingBurstLimit"]["Default"]) == (50, 100)


def test_the_scheduled_function_has_reserved_concurrency(template: dict[str, Any], resources: dict[str, Any]) -> None:
    reserved = _properties(resources, "ScheduledTick")["ReservedConcurrentExecutions"]
    assert reserved == {"Fn::If": ["ReserveTickConcurrency", {"Ref": "ScheduledTickReservedConcurrency"},
                                   {"Ref": "AWS::NoValue"}]}
    assert template["Parameters"]["ScheduledTickReservedConcurrency"]["Default"] == 2
    for function in set(FUNCTIONS) - {"ScheduledTick"}:  # the others share the account's unreserved pool
        assert "ReservedConcurrentExecutions" not in _properties(resources, function), function


def test_refresh_functions_have_the_memory_the_answer_caps_need(resources: dict[str, Any]) -> None:
    """docs/benchmarks.md "Memory per MB of provider answer" and docs/reference.md §4 "Limits": ~100 MB of process,
    one large answer at a time (the worst 32 MB answer peaks at +170 MB), 31 other fetches holding answers of at most
    1 MB (≤ 17 MB each at the densest), the catalog's records and diffs: 100 + 170 + 31 × 17 ≈ 800 MB < 1,024 MB.
    A provider may raise its limits (max_response_mb, max_models) only as far as 64 MB (+340 MB at the densest:
    ≈ 970 MB)."""
    from chalicelib.core.limits import MAX_MODELS_CEILING, MAX_MODELS_PER_PROVIDER, MAX_RESPONSE_MB_CEILING
    from chalicelib.http import DEFAULT_MAX_BODY_BYTES
    from chalicelib.http._client import LARGE_ANSWER_BYTES

    assert (DEFAULT_MAX_BODY_BYTES, LARGE_ANSWER_BYTES, MAX_MODELS_PER_PROVIDER) == (32 << 20, 1 << 20, 50_000)
    assert (MAX_RESPONSE_MB_CEILING, MAX_MODELS_CEILING) == (64, 100_000)
    for function in ("APIHandler", "ScheduledTick"):
        assert _properties(resources, function)["MemorySize"] >= 1024, function


def test_schedule_rate_is_the_stage_setting(resources: dict[str, Any]) -> None:
    minutes = int(STAGE_CONFIG["environment_variables"]["MODEL_CATALOG_SCHEDULE_RATE_MINUTES"])
    events = _properties(resources, "ScheduledTick")["Events"]
    assert [event["Type"] for event in events.values()] == ["Schedule"]
    [event] = events.values()
    assert event["Properties"]["Schedule"] == f"rate({minutes} minute{'' if minutes == 1 else 's'})"
    for function in set(FUNCTIONS) - {"ScheduledTick"}:
        assert "Events" not in _properties(resources, function), function


def test_bundle_carries_linux_wheels_for_the_runtime(build_dir: Path, resources: dict[str, Any]) -> None:
    version = _properties(resources, "APIHandler")["Runtime"].removeprefix("python3.")
    with zipfile.ZipFile(build_dir / "deployment.zip") as bundle:
        names = set(bundle.namelist())
    assert f"pydantic_core/_pydantic_core.cpython-3{version}-x86_64-linux-gnu.so" in names
    assert {"app.py", "chalicelib/bootstrap.py", STAGE_CONFIG["environment_variables"]["MODEL_CATALOG_CONFIG"]} <= names
    assert not any(name.startswith(("tests/", ".chalice/", "infra/")) for name in names)


def test_bundle_holds_only_the_deployed_code(build_dir: Path) -> None:
    """Chalice bundles app.py and chalicelib/: the local stack, the CLI and the demo data live outside it."""
    import check_package

    with zipfile.ZipFile(build_dir / "deployment.zip") as bundle:
        names = set(bundle.namelist())
    own = {name for name in names if (name == "app.py" or name.startswith("chalicelib/")) and "__pycache__" not in name}
    source = {path.relative_to(ROOT).as_posix() for path in (ROOT / "chalicelib").rglob("*") if path.is_file()}
    assert own == {"app.py"} | {name for name in source if "__pycache__" not in name}
    assert not any(name.startswith(("devstack/", "catalog_cli/", "chalicelib/local/")) for name in names)
    assert not any(name.endswith("demo_registry.json") for name in names)
    assert "chalicelib/schema.py" not in names
    assert check_package.check_no_tooling(names) == []


def test_check_package_names_tooling_that_slipped_into_the_bundle() -> None:
    import check_package

    problems = check_package.check_no_tooling(
        ["app.py", "chalicelib/settings.py", "devstack/stack.py", "devstack/gateway.py", "catalog_cli/main.py",
         "chalicelib/local/demo_registry.json", "chalicelib/data/demo_registry.json", "tests/test_app.py"]
    )

    assert sorted(problem.split(" must not be in the Lambda bundle", 1)[0] for problem in problems) == [
        "catalog_cli/", "chalicelib/data/demo_registry.json", "chalicelib/local/", "devstack/", "tests/"]
    joined = "\n".join(problems)
    for path in ("devstack/stack.py", "devstack/gateway.py", "catalog_cli/main.py", "chalicelib/local/demo_registry.json",
                 "chalicelib/data/demo_registry.json", "tests/test_app.py"):
        assert path in joined
    assert "chalicelib/settings.py" not in joined
    assert check_package.check_no_tooling(["app.py", "chalicelib/settings.py", "chalicelib/static/app.js"]) == []


# --- lint and the checker ---------------------------------------------------------------------------------------


def _cfn_lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CFN_LINT), "--", str(path)], capture_output=True, text=True, timeout=120)


def test_packaged_template_passes_cfn_lint(build_dir: Path) -> None:
    result = _cfn_lint(build_dir / "sam.yaml")
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_cfn_lint_does_catch_a_broken_template(build_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text((build_dir / "sam.yaml").read_text().replace("PAY_PER_REQUEST", "PAY_PER_REQUESTS"))
    result = _cfn_lint(broken)
    assert result.returncode != 0 and "PAY_PER_REQUESTS" in result.stdout


def test_dev_stage_data_template_passes_cfn_lint(tmp_path: Path) -> None:
    out = tmp_path / "dev-data.yaml"
    subprocess.run([sys.executable, str(ROOT / "infra" / "render_template.py"), "dev-data", "--out", str(out)],
                   check=True, timeout=60)
    result = _cfn_lint(out)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
    data = render_template.load_cfn_yaml(out)["Resources"]
    dev_env = CHALICE_CONFIG["stages"]["dev"]["environment_variables"]
    for spec in TABLES.values():
        assert data[spec["logical_id"]]["Properties"]["TableName"] == dev_env[spec["env_var"]]
    assert data["OAuthTokenKeyAlias"]["Properties"]["AliasName"] == dev_env["MODEL_CATALOG_KMS_KEY_ID"]


def test_dev_policy_file_is_current_and_grants_what_the_package_grants(resources: dict[str, Any]) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "infra" / "render_template.py"), "dev-policy", "--check"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    dev = json.loads((ROOT / ".chalice" / "policy-dev.json").read_text())
    packaged = _granted_to_the_code(resources) | {"logs:CreateLogStream", "logs:PutLogEvents"}
    assert set(_grants(dev["Statement"])) == packaged | {"logs:CreateLogGroup"}


def test_prod_policy_file_fails_closed_if_deployed_without_the_template() -> None:
    prod = json.loads((ROOT / ".chalice" / "policy-prod.json").read_text())
    assert [statement["Effect"] for statement in prod["Statement"]] == ["Deny"]


def test_rest_paths_are_importable_by_api_gateway(template: dict[str, Any]) -> None:
    import check_package

    assert check_package.check_rest_paths(template) == []
    paths = template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]["paths"]
    assert "/api/v1/providers:refresh" in paths and "/api/v1/providers/{provider_id}/refresh" in paths
    broken = copy.deepcopy(template)
    broken_paths = broken["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]["paths"]
    broken_paths["/api/v1/providers/{other_name}"] = broken_paths["/api/v1/providers/{provider_id}/refresh"]
    broken_paths["/api/v1/bad path"] = broken_paths["/api/v1/providers/{provider_id}/refresh"]
    problems = check_package.check_rest_paths(broken)
    assert any("{other_name}" in problem and "{provider_id}" in problem for problem in problems)
    assert any("'bad path'" in problem for problem in problems)


def test_package_checker_rejects_a_function_without_its_environment(template: dict[str, Any]) -> None:
    import check_package

    assert check_package.check_template(template, STAGE) == []
    broken = copy.deepcopy(template)
    del broken["Resources"]["WebsocketMessage"]["Properties"]["Environment"]["Variables"]["MODEL_CATALOG_EVENTS_TABLE"]
    broken["Resources"]["ScheduledTick"]["Properties"]["Events"]["ScheduledTickEvent"]["Properties"]["Schedule"] = (
        "rate(7 minutes)"
    )
    problems = check_package.check_template(broken, STAGE)
    assert any("WebsocketMessage: MODEL_CATALOG_EVENTS_TABLE" in problem for problem in problems)
    assert any("ScheduledTick: schedules" in problem for problem in problems)
