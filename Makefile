# Two commands set up everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test slurm-packages clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[dev,tensorboard]"
	touch $@

# The smoke profile of Table 2: every block type trained briefly on generated data, then its table
# and figure under results/smoke/ (the smoke profile's own folder: never taken for a reproduction).
demo: $(VENV)/.installed
	$(PY) -m experiments.run table_block_type --profile smoke

# The test suite, including the SLURM tests against a real single-node cluster (Debian packages,
# installed here if missing; the tests start the cluster themselves).
test: $(VENV)/.installed slurm-packages
	$(PY) -m pytest -q

# slurmdbd + MariaDB give the dev cluster real accounting (sacct), as users' clusters have.
SLURM_DEBS := slurmctld slurmd slurm-client munge slurmdbd mariadb-server
slurm-packages:
	@command -v slurmctld >/dev/null && command -v munged >/dev/null && command -v slurmdbd >/dev/null \
	  && command -v mariadbd >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SLURM_DEBS))

clean:
	rm -rf $(VENV) results/runs results/tables results/figures results/data results/slurm results/specs \
	  results/sequential results/REPORT.md results/smoke
