# model-catalog — the two commands are `make run` and `make test`; everything else is optional.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run test test-fast package lint-infra bench lint clean venv

venv: $(STAMP)

# Recreated whenever a requirements file changes; a .venv older than Python 3.12 is replaced.
$(STAMP): requirements.txt requirements-dev.txt infra/find-python.sh
	@if [ -x $(PY) ] && ! $(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)'; then \
	  echo "Replacing $(VENV): it is older than Python 3.12"; rm -rf $(VENV); fi
	@if [ ! -x $(PY) ]; then \
	  python_bin=$$(infra/find-python.sh) || exit 1; \
	  echo "Creating $(VENV) with $$python_bin"; \
	  "$$python_bin" -m venv $(VENV) || exit 1; fi
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	@touch $(STAMP)

run: $(STAMP)
	@if [ "$(RESET)" = "1" ]; then MODEL_CATALOG_RESET=1 exec $(PY) -m devstack; \
	 else exec $(PY) -m devstack; fi

# Every tier: tests/unit (pure, fakes), tests/integration (moto, packaging), tests/e2e (the local stack, the
# browser), tests/bench (the benchmark harness's own smoke test). `make test-fast` is the unit tier alone.
# Under `make test` a real client that could not be installed (Chromium, opencode) fails its tests instead of
# skipping them: CI never passes without having run them.
test: $(STAMP)
	@bash infra/ensure-chromium.sh
	@bash infra/ensure-test-clients.sh
	MODEL_CATALOG_REQUIRE_CLIENTS=1 $(PY) -m pytest -n 2 $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -n 2 tests/unit $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# The deployable template and code bundle: build/sam.yaml + build/deployment.zip (README, "Deploy").
# chalice takes the Lambda runtime from the Python it runs under: the .venv's (3.12+).
CHALICE_STAGE ?= prod
BUILD_DIR ?= build
package: $(STAMP)
	rm -rf $(BUILD_DIR) && mkdir -p $(BUILD_DIR)
	$(PY) infra/render_template.py merge --stage $(CHALICE_STAGE) --out $(BUILD_DIR)/merge-template.yaml
	AWS_EC2_METADATA_DISABLED=true AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-$${AWS_REGION:-us-east-1}} \
	  $(VENV)/bin/chalice package \
	  --stage $(CHALICE_STAGE) --pkg-format cloudformation --template-format yaml \
	  --merge-template $(BUILD_DIR)/merge-template.yaml $(BUILD_DIR)
	$(PY) infra/check_package.py $(BUILD_DIR) --stage $(CHALICE_STAGE)
	@# chalice caches one ~20 MB bundle per code version in .chalice/deployments; keep the newest three.
	@ls -t .chalice/deployments/*.zip 2>/dev/null | tail -n +4 | xargs -r rm -f

lint-infra: package
	$(VENV)/bin/cfn-lint -- $(BUILD_DIR)/sam.yaml

bench: $(STAMP)
	$(PY) -m tests.bench --output docs/benchmarks.md

clean:
	rm -rf build .pytest_cache .local
