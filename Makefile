# kpdigest: `make demo` runs the whole pipeline once on embedded defaults; `make test` passes the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
KPD    := $(BIN)/kpdigest

.PHONY: demo test lint venv node clean golden bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# Prism (the providers' API specs as a validating mock server) for the contract tests.
node_modules/.installed: package.json
	npm install --no-audit --no-fund --silent
	touch $@

node: node_modules/.installed

demo: venv
	$(KPD) init
	$(KPD) subscribers import sample/subscribers.csv
	$(KPD) collect
	$(KPD) queue add --title "Pat, don't rub: the two-minute KP habit" --file sample/tip.md --approve
	@N=$$($(KPD) issue build) && \
	 $(KPD) issue send $$N && \
	 $(KPD) issue preview $$N >/dev/null && \
	 echo "" && echo "Outbox (one .eml per subscriber): $(CURDIR)/var/outbox/" && \
	 echo "Browser preview:                   $(CURDIR)/var/preview.html"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: venv node lint
	$(BIN)/python -m pytest -n 2 --dist loadgroup

golden: venv
	$(BIN)/python -m pytest tests/test_render_golden.py --update-golden

bench: venv
	$(BIN)/python -m benchmarks

clean:
	rm -rf var/outbox var/preview.html var/kpdigest.db*
