"""Sanity checks on `make package`'s output (build/sam.yaml + build/deployment.zip). Exit 1 with a list of
problems, so a template that would deploy but not work (a function without its table names, a role without its
policy, a bundle built for the wrong Python, a config the deployed functions would reject), or a bundle that
carries tooling (the local stack, the CLI, demo data, tests), fails the build.

    python infra/check_package.py build [--stage prod]
"""

from __future__ import annotations

import argparse
import re
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))
sys.path.insert(0, str(PROJECT_DIR / "infra"))

import render_template  # noqa: E402

# Lambda's limit for code uploaded through S3 (what `aws cloudformation package` does), unzipped.
MAX_UNZIPPED_BYTES = 250 * 1024 * 1024
# Variables whose value is the secret itself; the template would publish them to anyone who can read the stack.
FORBIDDEN_PLAIN_VARIABLES = ("MODEL_CATALOG_API_TOKEN",)
# The project's code in the bundle: what chalice takes from the project (app.py, chalicelib/). Everything else in
# the zip is a dependency (requirements.txt) or chalice's own runtime.
REQUIRED_FILES = ("app.py", "chalicelib/settings.py", "chalicelib/bootstrap.py")
# Tooling that must never ship to Lambda: the local stack (devstack/, formerly chalicelib/local/), the CLI
# (catalog_cli/), the tests, and the local stack's demo data wherever it would end up.
TOOLING_PREFIXES = ("devstack/", "catalog_cli/", "tests/", "chalicelib/local/")
TOOLING_FILE_NAMES = ("demo_registry.json",)


def _variables(function: dict[str, Any]) -> dict[str, Any]:
    return function.get("Properties", {}).get("Environment", {}).get("Variables", {}) or {}


def check_template(template: dict[str, Any], stage: str) -> list[str]:
    problems: list[str] = []
    resources: dict[str, Any] = template.get("Resources", {})
    settings = render_template.chalice_stage(stage)
    api_stage = settings["api_gateway_stage"]
    specs = render_template.table_specs()

    for logical_id, resource in resources.items():
        if "Type" not in resource:
            problems.append(f"{logical_id}: no Type — the merge template patches a resource chalice did not generate")

    functions = {k: v for k, v in resources.items() if v.get("Type") == "AWS::Serverless::Function"}
    unknown = sorted(set(functions) - set(render_template.FUNCTIONS))
    if unknown:
        problems.append(
            f"functions {unknown} are not in FUNCTIONS in infra/render_template.py: they would run without "
            "their environment and policy"
        )

    required = {spec["env_var"]: {"Ref": spec["logical_id"]} for spec in specs.values()}
    required.update(
        MODEL_CATALOG_WS_API_ID={"Ref": "WebsocketAPI"},
        MODEL_CATALOG_WS_STAGE=api_stage,
        MODEL_CATALOG_KMS_KEY_ID={"Ref": "OAuthTokenKey"},
        MODEL_CATALOG_API_TOKEN_SECRET_ID={"Ref": "ApiTokenSecret"},
    )
    ws_stage = resources.get("WebsocketAPIStage", {}).get("Properties", {}).get("StageName")
    if ws_stage != api_stage:
        problems.append(f"WebsocketAPIStage is {ws_stage!r}, the functions are told {api_stage!r}")

    for logical_id, function in sorted(functions.items()):
        variables = _variables(function)
        for name, value in required.items():
            if variables.get(name) != value:
                problems.append(f"{logical_id}: {name} is {variables.get(name)!r}, expected {value!r}")
        if not variables.get("MODEL_CATALOG_CONFIG"):
            problems.append(f"{logical_id}: MODEL_CATALOG_CONFIG is not set")
        for name in FORBIDDEN_PLAIN_VARIABLES:
            if name in variables:
                problems.append(f"{logical_id}: {name} must not be in the template (use the Secrets Manager secret)")
        properties = function.get("Properties", {})
        runtime = str(properties.get("Runtime", ""))
        match = re.fullmatch(r"python3\.(\d+)", runtime)
        if not match or int(match.group(1)) < 12:
            problems.append(f"{logical_id}: runtime {runtime!r}; run `chalice package` under Python 3.12+")
        if properties.get("LoggingConfig", {}).get("LogGroup") != {"Ref": "FunctionLogGroup"}:
            problems.append(f"{logical_id}: does not log to FunctionLogGroup (its role may only write there)")
        role = properties.get("Role")
        role_id = role.get("Fn::GetAtt", [None])[0] if isinstance(role, dict) else None
        role_properties = resources.get(role_id, {}).get("Properties", {}) if role_id else {}
        inline = [policy.get("PolicyName") for policy in role_properties.get("Policies") or []]
        managed = role_properties.get("ManagedPolicyArns")
        expected_inline = [render_template.LOGS_POLICY_NAME]
        if logical_id in render_template.KICKING_FUNCTIONS:
            expected_inline.append(render_template.KICK_POLICY_NAME)
            if variables.get(render_template.WEBHOOK_FUNCTION_ENV) != {"Ref": "WebhookDispatch"}:
                problems.append(f"{logical_id}: {render_template.WEBHOOK_FUNCTION_ENV} must name WebhookDispatch")
        if inline != expected_inline or managed != [{"Ref": render_template.ACCESS_POLICY}]:
            problems.append(
                f"{logical_id}: role {role_id} has policies {inline} and managed {managed}; expected the "
                f"{render_template.ACCESS_POLICY} managed policy and the {render_template.LOGS_POLICY_NAME!r} one"
            )

    scheduled = functions.get("ScheduledTick", {}).get("Properties", {})
    minutes = int(settings["environment_variables"].get("MODEL_CATALOG_SCHEDULE_RATE_MINUTES") or 1)
    expected_rate = f"rate({minutes} minute{'s' if minutes != 1 else ''})"
    schedules = [event.get("Properties", {}).get("Schedule") for event in (scheduled.get("Events") or {}).values()]
    if schedules != [expected_rate]:
        problems.append(f"ScheduledTick: schedules {schedules}, expected [{expected_rate!r}] (stage setting)")
    return problems


STATIC_PATH_PART = re.compile(r"[A-Za-z0-9._:,-]+")
VARIABLE_PATH_PART = re.compile(r"\{[A-Za-z0-9._-]+\+?\}")


def check_rest_paths(template: dict[str, Any]) -> list[str]:
    """What API Gateway's import would refuse at deploy time, which cfn-lint cannot see inside the OpenAPI body:
    path characters, and two different variable names at one level (/a/{x} next to /a/{y}/b)."""
    api = template.get("Resources", {}).get("RestAPI", {}).get("Properties", {})
    paths = (api.get("DefinitionBody") or {}).get("paths") or {}
    problems: list[str] = []
    variables: dict[str, set[str]] = {}
    for path in paths:
        parts = [part for part in path.split("/") if part]
        for depth, part in enumerate(parts):
            if not (STATIC_PATH_PART.fullmatch(part) or VARIABLE_PATH_PART.fullmatch(part)):
                problems.append(f"REST path {path}: API Gateway does not accept the path part {part!r}")
            if part.startswith("{"):
                variables.setdefault("/" + "/".join(parts[:depth]), set()).add(part)
    for parent, names in sorted(variables.items()):
        if len(names) > 1:
            problems.append(
                f"REST paths under {parent or '/'} use the variables {sorted(names)}: API Gateway allows one "
                "variable name per level (rename them in app.py)"
            )
    return problems


def check_bundle(bundle: Path, template: dict[str, Any], stage: str) -> list[str]:
    problems: list[str] = []
    with zipfile.ZipFile(bundle) as archive:
        infos = archive.infolist()
        names = {info.filename for info in infos}
        unzipped = sum(info.file_size for info in infos)
        if unzipped > MAX_UNZIPPED_BYTES:
            problems.append(f"{bundle}: {unzipped / 2**20:.0f} MiB unzipped, Lambda's limit is 250 MiB")
        for required in REQUIRED_FILES:
            if required not in names:
                problems.append(f"{bundle}: {required} is missing")
        problems.extend(f"{bundle}: {problem}" for problem in check_no_tooling(names))

        runtime = template["Resources"].get("APIHandler", {}).get("Properties", {}).get("Runtime", "python3")
        architecture = (template["Resources"].get("APIHandler", {}).get("Properties", {}).get("Architectures")
                        or ["x86_64"])[0]
        machine = {"x86_64": "x86_64", "arm64": "aarch64"}[architecture]
        abi = "cpython-3" + runtime.removeprefix("python3.") + f"-{machine}-linux-gnu"
        for package, module in (("pydantic-core", "pydantic_core/_pydantic_core"), ("google-re2", "re2/_re2")):
            native = [name for name in names if name.startswith(f"{module}.") and name.endswith(".so")]
            if native != [f"{module}.{abi}.so"]:
                problems.append(f"{bundle}: {package} native module {native}, expected the {abi} build (manylinux)")

        settings = render_template.chalice_stage(stage)
        environment = settings["environment_variables"]
        config_path = environment.get("MODEL_CATALOG_CONFIG") or "chalicelib/config/example.toml"
        member = str(PurePosixPath(config_path))
        if member not in names:
            problems.append(f"{bundle}: MODEL_CATALOG_CONFIG={config_path} is not in the bundle")
        else:
            problems.extend(_check_config(archive.read(member), member, environment))
    return problems


def check_no_tooling(names: Iterable[str]) -> list[str]:
    """One problem per kind of tooling found in the bundle, naming the offending paths."""
    found: dict[str, list[str]] = {}
    for name in sorted(names):
        prefix = next((p for p in TOOLING_PREFIXES if name.startswith(p)), None)
        if prefix is None and PurePosixPath(name).name in TOOLING_FILE_NAMES:
            prefix = name
        if prefix is not None:
            found.setdefault(prefix, []).append(name)
    problems = []
    for prefix, paths in found.items():
        shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
        problems.append(
            f"{prefix} must not be in the Lambda bundle ({len(paths)} file(s): {shown}); only app.py, chalicelib/ "
            "and the dependencies belong there — keep tooling and demo data outside chalicelib/"
        )
    return problems


def bundle_stats(bundle: Path) -> dict[str, int]:
    """Size, files, and the project's own share (app.py + chalicelib/): files and non-blank Python lines."""
    with zipfile.ZipFile(bundle) as archive:
        files = [info for info in archive.infolist() if not info.is_dir()]
        own = [info for info in files if info.filename == "app.py" or info.filename.startswith("chalicelib/")]
        lines = sum(
            1
            for info in own
            if info.filename.endswith(".py")
            for line in archive.read(info).decode("utf-8", "replace").splitlines()
            if line.strip()
        )
    return {"bytes": bundle.stat().st_size, "files": len(files), "own_files": len(own), "own_python_lines": lines}


def _check_config(content: bytes, member: str, environment: dict[str, str]) -> list[str]:
    """Validate the bundled config the way the deployed functions will (https-only unless the stage allows)."""
    import tempfile

    from chalicelib.catalog_config import load_config
    from chalicelib.errors import ConfigError

    allow_private = (environment.get("MODEL_CATALOG_ALLOW_PRIVATE_URLS") or "0").strip().lower() in ("1", "true", "yes")
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / PurePosixPath(member).name
        path.write_bytes(content)
        try:
            load_config(path, environment, allow_private)
        except ConfigError as exc:
            return [f"bundled config {member} would not load when deployed: {exc}"]
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("build_dir", type=Path)
    parser.add_argument("--stage", default="prod")
    args = parser.parse_args(argv)
    template_file = args.build_dir / "sam.yaml"
    bundle = args.build_dir / "deployment.zip"
    missing = [str(path) for path in (template_file, bundle) if not path.is_file()]
    if missing:
        print(f"check_package: missing {', '.join(missing)}", file=sys.stderr)
        return 1
    template = render_template.load_cfn_yaml(template_file)
    problems = (
        check_template(template, args.stage) + check_rest_paths(template) + check_bundle(bundle, template, args.stage)
    )
    if problems:
        print(f"check_package: {len(problems)} problem(s) in {args.build_dir}:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    functions = sum(1 for r in template["Resources"].values() if r.get("Type") == "AWS::Serverless::Function")
    stats = bundle_stats(bundle)
    print(
        f"check_package: {template_file} ({functions} functions) and {bundle} ({stats['bytes'] / 2**20:.1f} MiB: "
        f"{stats['bytes']} bytes, {stats['files']} files; app.py + chalicelib/: {stats['own_files']} files, "
        f"{stats['own_python_lines']} non-blank Python lines) look deployable"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
