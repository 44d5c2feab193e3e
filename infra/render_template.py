"""Renders the deploy templates from the project's single sources of truth.

Sources: infra/tables.json (the DynamoDB schema, declared once), infra/resources.yaml (the hand-written
resources: KMS key, API token secret, log group, parameters) and .chalice/config.json (stages).

    render_template.py merge --stage prod --out build/merge-template.yaml
        The template `chalice package --merge-template` merges into the one it generates: resources.yaml plus
        the tables, every function's environment and logging, the service's managed IAM policy (AccessPolicy)
        and, on every function's role, that policy plus an inline one for writing logs.
    render_template.py dev-data --out build/dev-data.yaml
        A standalone stack with the tables, KMS key and API token secret of the `dev` stage, for the
        `chalice deploy --stage dev` quick start (chalice deploy creates functions and APIs, not data).
    render_template.py dev-policy [--check]
        Writes .chalice/policy-dev.json (the role policy `chalice deploy --stage dev` attaches), or checks it is
        current. Same statements as the packaged policy, with the dev stage's static names instead of references.

Chalice's deep merge recurses into mappings and replaces lists, so the function patches only add keys
(Environment variables, LoggingConfig) and the role patches replace the Policies list chalice filled from
.chalice/policy-<stage>.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

PROJECT_DIR = Path(__file__).resolve().parent.parent
TABLES_FILE = PROJECT_DIR / "infra" / "tables.json"
RESOURCES_FILE = PROJECT_DIR / "infra" / "resources.yaml"
CHALICE_CONFIG_FILE = PROJECT_DIR / ".chalice" / "config.json"
DEV_POLICY_FILE = PROJECT_DIR / ".chalice" / "policy-dev.json"

# The Lambda functions `chalice package` generates for app.py, by logical id, with their chalice function names
# (a role's logical id is "<FunctionName>Role"). check_package.py fails the build if chalice generates a function
# that is not listed here, so a new handler cannot ship without its environment and policy.
FUNCTIONS: dict[str, str] = {
    "APIHandler": "api_handler",
    "ScheduledTick": "scheduled_tick",
    "WebsocketConnect": "websocket_connect",
    "WebsocketMessage": "websocket_message",
    "WebsocketDisconnect": "websocket_disconnect",
    "WebhookDispatch": "webhook_dispatch",
}
# The functions that kick the webhook relay (an asynchronous invoke of WebhookDispatch after a commit or a replay):
# they alone get MODEL_CATALOG_WEBHOOK_FUNCTION and an inline policy to invoke it. (Not in the shared AccessPolicy:
# WebhookDispatch's own role carries that policy, so naming the function there would be a dependency cycle.)
KICKING_FUNCTIONS = ("APIHandler", "ScheduledTick")
KICK_POLICY_NAME = "kick-webhook-dispatch"
WEBHOOK_FUNCTION_ENV = "MODEL_CATALOG_WEBHOOK_FUNCTION"
EVENT_BUS_ENV = "MODEL_CATALOG_EVENT_BUS"
ACCESS_POLICY = "AccessPolicy"  # the managed policy's logical id
LOGS_POLICY_NAME = "write-logs"

# Exactly the actions the deployed code calls (tests/test_template.py scans chalicelib and fails on any drift).
# Transactions (TransactWriteItems) have no IAM action of their own: each item is authorized by its item action
# (Put -> PutItem, Update -> UpdateItem, Delete -> DeleteItem, ConditionCheck -> ConditionCheckItem).
DYNAMODB_ITEM_ACTIONS = [
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",  # model chunks are read by key (a list's chunks come from several runs)
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",  # garbage collection's deletes are fenced by a check of the refresh lock
]
# Only the fan-out reads a whole table (every open connection).
SCAN_TABLES = ("connections",)
KMS_ACTIONS = ["kms:Encrypt", "kms:Decrypt"]
SSM_ACTIONS = ["ssm:GetParameter"]
EVENTS_ACTIONS = ["events:PutEvents"]
INVOKE_ACTIONS = ["lambda:InvokeFunction"]
LOG_ACTIONS = ["logs:CreateLogStream", "logs:PutLogEvents"]


def _to_cfn_name(name: str) -> str:
    """Chalice's own naming (chalice.utils.to_cfn_resource_name): api_handler_role -> ApiHandlerRole."""
    return "".join(part[:1].upper() + part[1:] for part in name.replace("-", "_").split("_") if part)


def role_logical_id(function_name: str) -> str:
    return _to_cfn_name(f"{function_name}_role")


# --- sources -------------------------------------------------------------------------------------------------


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation short-form tags (!Ref, !Sub, !GetAtt a.b, ...) into their long form."""


def _construct_intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = tag_suffix if tag_suffix in ("Ref", "Condition") else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_intrinsic)


def load_cfn_yaml(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_CfnLoader)  # a SafeLoader subclass


def table_specs() -> dict[str, dict[str, Any]]:
    return json.loads(TABLES_FILE.read_text(encoding="utf-8"))["tables"]


def chalice_stage(stage: str) -> dict[str, Any]:
    """The stage's effective top-level settings and environment (stage values over the top-level ones)."""
    config = json.loads(CHALICE_CONFIG_FILE.read_text(encoding="utf-8"))
    stages = config.get("stages", {})
    if stage not in stages:
        raise SystemExit(f"{CHALICE_CONFIG_FILE}: no stage {stage!r} (stages: {', '.join(stages)})")
    merged = {**{k: v for k, v in config.items() if k != "stages"}, **stages[stage]}
    merged["environment_variables"] = {
        **config.get("environment_variables", {}),
        **stages[stage].get("environment_variables", {}),
    }
    merged["app_name"] = config["app_name"]
    merged["api_gateway_stage"] = merged.get("api_gateway_stage") or "api"
    return merged


# --- shared pieces -------------------------------------------------------------------------------------------


def table_properties(spec: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": copy.deepcopy(spec["key_schema"]),
        "AttributeDefinitions": copy.deepcopy(spec["attribute_definitions"]),
    }
    if spec.get("global_secondary_indexes"):
        properties["GlobalSecondaryIndexes"] = copy.deepcopy(spec["global_secondary_indexes"])
    if spec.get("ttl_attribute"):
        properties["TimeToLiveSpecification"] = {"AttributeName": spec["ttl_attribute"], "Enabled": True}
    if spec.get("point_in_time_recovery"):
        properties["PointInTimeRecoverySpecification"] = {"PointInTimeRecoveryEnabled": True}
    return properties


def table_resource(spec: dict[str, Any], table_name: str | None = None, keep_on_delete: bool = True) -> dict[str, Any]:
    """A table. With ``keep_on_delete``, the tables declared with point-in-time recovery (the catalog: models and
    the encrypted OAuth tokens) survive a stack deletion or replacement; the others are disposable."""
    properties = table_properties(spec)
    if table_name:
        properties = {"TableName": table_name, **properties}
    policy = "Retain" if keep_on_delete and spec.get("point_in_time_recovery") else "Delete"
    return {
        "Type": "AWS::DynamoDB::Table",
        "DeletionPolicy": policy,
        "UpdateReplacePolicy": policy,
        "Properties": properties,
    }


def access_statements(
    table_arns: dict[str, Any],
    index_arns: dict[str, list[Any]],
    connections_arn: Any,
    kms_key_arn: Any,
    secret_arns: list[Any],
    parameter_arns: list[Any],
    kms_condition: dict[str, Any] | None = None,
    event_bus_arns: list[Any] | None = None,
) -> list[dict[str, Any]]:
    """What the service's code may do, wherever it runs (Lambda, or `tick` from a CronJob). Arguments are ARNs:
    CloudFormation references (packaged template) or strings (dev policy)."""
    item_resources: list[Any] = []
    for role, arn in table_arns.items():
        item_resources.append(arn)
        item_resources.extend(index_arns.get(role, []))
    kms_statement: dict[str, Any] = {
        "Sid": "OAuthTokenEncryption",
        "Effect": "Allow",
        "Action": list(KMS_ACTIONS),
        "Resource": kms_key_arn,
    }
    if kms_condition:
        kms_statement["Condition"] = kms_condition
    return [
        {"Sid": "CatalogTables", "Effect": "Allow", "Action": list(DYNAMODB_ITEM_ACTIONS), "Resource": item_resources},
        {
            "Sid": "ScanConnections",
            "Effect": "Allow",
            "Action": ["dynamodb:Scan"],
            "Resource": [table_arns[role] for role in SCAN_TABLES],
        },
        {
            "Sid": "WebSocketConnections",
            "Effect": "Allow",
            "Action": ["execute-api:ManageConnections"],
            "Resource": connections_arn,
        },
        kms_statement,
        {"Sid": "ReadSecrets", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"], "Resource": secret_arns},
        {"Sid": "ReadParameters", "Effect": "Allow", "Action": list(SSM_ACTIONS), "Resource": parameter_arns},
    ] + ([{"Sid": "PublishCatalogEvents", "Effect": "Allow", "Action": list(EVENTS_ACTIONS),
           "Resource": event_bus_arns}] if event_bus_arns else [])


def kick_statement(function_arns: list[Any]) -> dict[str, Any]:
    return {"Sid": "KickWebhookDispatch", "Effect": "Allow", "Action": list(INVOKE_ACTIONS), "Resource": function_arns}


def stage_event_bus(stage: str) -> str | None:
    """The EventBridge bus of the stage (``MODEL_CATALOG_EVENT_BUS`` in .chalice/config.json), or None (off)."""
    return chalice_stage(stage)["environment_variables"].get(EVENT_BUS_ENV) or None


def logs_statement(log_arns: list[Any], actions: list[str]) -> dict[str, Any]:
    return {"Sid": "WriteLogs", "Effect": "Allow", "Action": list(actions), "Resource": log_arns}


# --- the packaged template (merge) -----------------------------------------------------------------------------


def _sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}


def websocket_url_expression(api_stage: str) -> dict[str, Any]:
    return {
        "Fn::If": [
            "UseApiGatewayWebsocketUrl",
            _sub("wss://${WebsocketAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}/" + api_stage),
            {"Ref": "PublicWebsocketUrl"},
        ]
    }


def function_environment(specs: dict[str, dict[str, Any]], api_stage: str) -> dict[str, Any]:
    """The variables CloudFormation resolves; chalice adds the stage's static ones (config.json)."""
    variables: dict[str, Any] = {spec["env_var"]: {"Ref": spec["logical_id"]} for spec in specs.values()}
    variables.update(
        {
            "MODEL_CATALOG_WS_API_ID": {"Ref": "WebsocketAPI"},
            "MODEL_CATALOG_WS_STAGE": api_stage,
            "MODEL_CATALOG_WS_URL": websocket_url_expression(api_stage),
            "MODEL_CATALOG_KMS_KEY_ID": {"Ref": "OAuthTokenKey"},
            "MODEL_CATALOG_API_TOKEN_SECRET_ID": {"Ref": "ApiTokenSecret"},
        }
    )
    return variables


def packaged_access_policy(
    specs: dict[str, dict[str, Any]], api_stage: str, event_bus: str | None = None
) -> dict[str, Any]:
    arn_prefix = "arn:${AWS::Partition}"
    statements = access_statements(
        table_arns={role: {"Fn::GetAtt": [spec["logical_id"], "Arn"]} for role, spec in specs.items()},
        index_arns={
            role: [_sub("${" + spec["logical_id"] + ".Arn}/index/*")]
            for role, spec in specs.items()
            if spec.get("global_secondary_indexes")
        },
        connections_arn=_sub(
            arn_prefix + ":execute-api:${AWS::Region}:${AWS::AccountId}:${WebsocketAPI}/"
            + api_stage + "/*/@connections/*"
        ),
        kms_key_arn={"Fn::GetAtt": ["OAuthTokenKey", "Arn"]},
        secret_arns=[
            {"Ref": "ApiTokenSecret"},
            _sub(arn_prefix + ":secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${ProviderSecretsPrefix}*"),
        ],
        parameter_arns=[
            _sub(arn_prefix + ":ssm:${AWS::Region}:${AWS::AccountId}:parameter${ProviderParametersPath}*"),
        ],
        event_bus_arns=[_sub(arn_prefix + ":events:${AWS::Region}:${AWS::AccountId}:event-bus/" + event_bus)]
        if event_bus else None,
    )
    return {
        "Type": "AWS::IAM::ManagedPolicy",
        "Properties": {
            "Description": _sub("model-catalog (${AWS::StackName}): the service's data access, for its functions "
                                "and any other runner of `python -m chalicelib.cli tick`"),
            "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
        },
    }


def function_role_patch(kicks: bool = False) -> dict[str, Any]:
    """Chalice's role for one function: the shared access policy plus writing to the stack's log group (and, for
    the functions that kick the webhook relay, invoking WebhookDispatch)."""
    logs = {"Version": "2012-10-17", "Statement": [logs_statement([{"Fn::GetAtt": ["FunctionLogGroup", "Arn"]}],
                                                                   LOG_ACTIONS)]}
    policies = [{"PolicyName": LOGS_POLICY_NAME, "PolicyDocument": logs}]
    if kicks:
        invoke = {"Version": "2012-10-17", "Statement": [kick_statement([{"Fn::GetAtt": ["WebhookDispatch", "Arn"]}])]}
        policies.append({"PolicyName": KICK_POLICY_NAME, "PolicyDocument": invoke})
    return {"Properties": {"ManagedPolicyArns": [{"Ref": ACCESS_POLICY}], "Policies": policies}}


def merge_template(stage: str) -> dict[str, Any]:
    settings = chalice_stage(stage)
    api_stage = settings["api_gateway_stage"]
    specs = table_specs()
    template = load_cfn_yaml(RESOURCES_FILE)
    resources: dict[str, Any] = template.setdefault("Resources", {})
    outputs: dict[str, Any] = template.setdefault("Outputs", {})

    for spec in specs.values():
        resources[spec["logical_id"]] = table_resource(spec)
        outputs[f"{spec['logical_id']}Name"] = {"Value": {"Ref": spec["logical_id"]}}
    outputs["PublicWebsocketUrl"] = {
        "Description": "The WebSocket URL clients are told to use.",
        "Value": websocket_url_expression(api_stage),
    }

    resources[ACCESS_POLICY] = packaged_access_policy(specs, api_stage, stage_event_bus(stage))
    outputs["AccessPolicyArn"] = {
        "Description": "The service's data-access policy; attach it to the role of a CronJob that runs `tick`.",
        "Value": {"Ref": ACCESS_POLICY},
    }
    environment = function_environment(specs, api_stage)
    for logical_id, function_name in FUNCTIONS.items():
        variables = copy.deepcopy(environment)
        if logical_id in KICKING_FUNCTIONS:
            variables[WEBHOOK_FUNCTION_ENV] = {"Ref": "WebhookDispatch"}
        resources[logical_id] = {
            "Properties": {
                "Environment": {"Variables": variables},
                "LoggingConfig": {"LogGroup": {"Ref": "FunctionLogGroup"}, "LogFormat": "Text"},
            }
        }
        resources[role_logical_id(function_name)] = function_role_patch(kicks=logical_id in KICKING_FUNCTIONS)
    resources["ScheduledTick"]["Properties"]["ReservedConcurrentExecutions"] = {
        "Fn::If": ["ReserveTickConcurrency", {"Ref": "ScheduledTickReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
    }
    resources.update(deployed_limits())
    return template


def deployed_limits() -> dict[str, Any]:
    """Patches that bound what callers can cost: stage throttling on both APIs, and concurrency reserved for the
    scheduled function (requests to the others can never leave it without an execution to run a refresh in)."""
    throttle = {"ThrottlingRateLimit": {"Ref": "ApiThrottlingRateLimit"},
                "ThrottlingBurstLimit": {"Ref": "ApiThrottlingBurstLimit"}}
    return {
        "RestAPI": {"Properties": {"MethodSettings": [{"ResourcePath": "/*", "HttpMethod": "*", **throttle}]}},
        "WebsocketAPIStage": {"Properties": {"DefaultRouteSettings": {
            "ThrottlingRateLimit": {"Ref": "WebsocketThrottlingRateLimit"},
            "ThrottlingBurstLimit": {"Ref": "WebsocketThrottlingBurstLimit"},
        }}},
    }


# --- the dev stage (chalice deploy) ----------------------------------------------------------------------------


def _dev_names(stage: str = "dev") -> dict[str, Any]:
    settings = chalice_stage(stage)
    env = settings["environment_variables"]
    specs = table_specs()
    missing = [spec["env_var"] for spec in specs.values() if not env.get(spec["env_var"])]
    for name in ("MODEL_CATALOG_KMS_KEY_ID", "MODEL_CATALOG_API_TOKEN_SECRET_ID"):
        if not env.get(name):
            missing.append(name)
    if missing:
        raise SystemExit(f"{CHALICE_CONFIG_FILE}: stage {stage!r} must set {', '.join(missing)}")
    kms_alias = env["MODEL_CATALOG_KMS_KEY_ID"]
    if not kms_alias.startswith("alias/"):
        raise SystemExit(f"{CHALICE_CONFIG_FILE}: stage {stage!r}: MODEL_CATALOG_KMS_KEY_ID must be an alias/ name")
    prefix = f"{settings['app_name']}-{stage}"
    return {
        "prefix": prefix,
        "api_stage": settings["api_gateway_stage"],
        "tables": {role: env[spec["env_var"]] for role, spec in specs.items()},
        "kms_alias": kms_alias,
        "api_token_secret": env["MODEL_CATALOG_API_TOKEN_SECRET_ID"],
        "event_bus": env.get(EVENT_BUS_ENV) or None,
        "webhook_function": env.get(WEBHOOK_FUNCTION_ENV) or f"{prefix}-webhook_dispatch",
    }


def dev_data_template(stage: str = "dev") -> dict[str, Any]:
    names = _dev_names(stage)
    specs = table_specs()
    resources: dict[str, Any] = {
        spec["logical_id"]: table_resource(spec, names["tables"][role], keep_on_delete=False)
        for role, spec in specs.items()
    }
    template = load_cfn_yaml(RESOURCES_FILE)
    # A quick-start stack is disposable: its key goes with it (after KMS's minimum 7-day waiting period).
    key = copy.deepcopy(template["Resources"]["OAuthTokenKey"])
    key.update(DeletionPolicy="Delete", UpdateReplacePolicy="Delete")
    key["Properties"]["PendingWindowInDays"] = 7
    resources["OAuthTokenKey"] = key
    resources["OAuthTokenKeyAlias"] = {
        "Type": "AWS::KMS::Alias",
        "Properties": {"AliasName": names["kms_alias"], "TargetKeyId": {"Ref": "OAuthTokenKey"}},
    }
    api_token = copy.deepcopy(template["Resources"]["ApiTokenSecret"])
    api_token["Properties"]["Name"] = names["api_token_secret"]
    resources["ApiTokenSecret"] = api_token
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"model-catalog {stage} stage data (tables, KMS key, API token) for `chalice deploy`.",
        "Resources": resources,
        "Outputs": {
            "ApiTokenSecretArn": {"Value": {"Ref": "ApiTokenSecret"}},
            **{f"{spec['logical_id']}Name": {"Value": {"Ref": spec["logical_id"]}} for spec in specs.values()},
        },
    }


def dev_policy(stage: str = "dev") -> dict[str, Any]:
    """Static ARNs (chalice deploy does not resolve references); partition `aws`."""
    names = _dev_names(stage)
    specs = table_specs()
    tables = names["tables"]
    prefix = names["prefix"]
    statements = access_statements(
        table_arns={role: f"arn:aws:dynamodb:*:*:table/{tables[role]}" for role in specs},
        index_arns={
            role: [f"arn:aws:dynamodb:*:*:table/{tables[role]}/index/*"]
            for role, spec in specs.items()
            if spec.get("global_secondary_indexes")
        },
        # The WebSocket API id is not known before the first deploy; the stage name is.
        connections_arn=f"arn:aws:execute-api:*:*:*/{names['api_stage']}/*/@connections/*",
        kms_key_arn="arn:aws:kms:*:*:key/*",
        kms_condition={"ForAnyValue:StringEquals": {"kms:ResourceAliases": names["kms_alias"]}},
        secret_arns=[f"arn:aws:secretsmanager:*:*:secret:{prefix}/*"],
        parameter_arns=[f"arn:aws:ssm:*:*:parameter/{prefix}/*"],
        event_bus_arns=[f"arn:aws:events:*:*:event-bus/{names['event_bus']}"] if names["event_bus"] else None,
    )
    # chalice deploy gives every function the one policy: the dispatch function's name is known from the stage.
    statements.append(kick_statement([f"arn:aws:lambda:*:*:function:{names['webhook_function']}"]))
    # chalice deploy names functions <app>-<stage>-<function>, and Lambda creates their log groups.
    statements.append(
        logs_statement([f"arn:aws:logs:*:*:log-group:/aws/lambda/{prefix}-*"], ["logs:CreateLogGroup", *LOG_ACTIONS])
    )
    return {"Version": "2012-10-17", "Statement": statements}


# --- output --------------------------------------------------------------------------------------------------


class _NoAliasDumper(yaml.SafeDumper):
    """CloudFormation does not accept YAML anchors/aliases; always write repeated values out."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(template: dict[str, Any]) -> str:
    return yaml.dump(template, Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True, width=120)


def dump_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2) + "\n"


def _write(text: str, out: str | None) -> None:
    if out in (None, "-"):
        sys.stdout.write(text)
        return
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    merge = commands.add_parser("merge", help="the merge template for `chalice package`")
    merge.add_argument("--stage", default="prod")
    merge.add_argument("--out", default="-")
    data = commands.add_parser("dev-data", help="the dev stage's data stack (chalice deploy quick start)")
    data.add_argument("--stage", default="dev")
    data.add_argument("--out", default="-")
    policy = commands.add_parser("dev-policy", help="write or --check .chalice/policy-dev.json")
    policy.add_argument("--stage", default="dev")
    policy.add_argument("--check", action="store_true", help="exit 1 if the file is not current")
    args = parser.parse_args(argv)

    renderers: dict[str, Callable[[], str]] = {
        "merge": lambda: dump_yaml(merge_template(args.stage)),
        "dev-data": lambda: dump_yaml(dev_data_template(args.stage)),
    }
    if args.command in renderers:
        _write(renderers[args.command](), args.out)
        return 0
    expected = dump_json(dev_policy(args.stage))
    if args.check:
        current = DEV_POLICY_FILE.read_text(encoding="utf-8") if DEV_POLICY_FILE.exists() else ""
        if current != expected:
            print(f"{DEV_POLICY_FILE} is out of date; run: python infra/render_template.py dev-policy", file=sys.stderr)
            return 1
        return 0
    _write(expected, str(DEV_POLICY_FILE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
