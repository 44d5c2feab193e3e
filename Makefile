# model-catalog — the two commands are `make run` and `make test`; everything else is optional.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run test package lint-infra bench lint clean venv

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
	@if [ "$(RESET)" = "1" ]; then MODEL_CATALOG_RESET=1 exec $(PY) -m chalicelib.local; \
	 else exec $(PY) -m chalicelib.local; fi

test: $(STAMP)
	@bash infra/ensure-chromium.sh
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

package: $(STAMP)
	rm -rf build && mkdir -p build
	$(VENV)/bin/chalice package --stage prod --pkg-format cloudformation \
	  --template-format yaml --merge-template infra/resources.yaml build/
	$(PY) infra/check_package.py build

lint-infra: package
	$(VENV)/bin/cfn-lint build/sam.yaml

bench: $(STAMP)
	$(PY) -m chalicelib.local.bench --output docs/benchmarks.md

clean:
	rm -rf build .pytest_cache .local
