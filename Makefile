# Two commands set up everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test slurm-packages cluster-start cluster-stop clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

# The smoke profile of Table 2: every block type trained briefly on generated data, then its table
# and figure under results/.
demo: $(VENV)/.installed
	$(PY) -m experiments.run table_block_type --profile smoke

# The test suite, including the SLURM tests against a real single-node cluster (Debian packages,
# installed here if missing; the tests start the cluster themselves).
test: $(VENV)/.installed slurm-packages
	$(PY) -m pytest -q

slurm-packages:
	@command -v slurmctld >/dev/null && command -v munged >/dev/null || \
	  (apt-get update -qq && apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge)

clean:
	rm -rf $(VENV) results/runs results/tables results/figures results/data results/slurm results/REPORT.md
