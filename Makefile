# dbkeep — the two commands a newcomer needs are `make run` and `make test`.
# Both install what is missing first (Debian packages, then a .venv), idempotently.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# libssl-dev and gcc build the native relay (src/dbkeep/gateway/relay/*.c) against the system OpenSSL;
# libmariadb-java, libpostgresql-jdbc-java and the JDK run the Java client tests (Connector/J, pgjdbc);
# libmariadbd-dev has the server plugin headers for dbkeep's AWSAuthenticationPlugin (IAM accounts);
# libpam0g-dev has the headers of dbkeep's PAM module (PostgreSQL IAM accounts), postgresql-server-dev-15
# those of its ProcessUtility hook (the engine refuses changes to the roles dbkeep owns);
# chromium (and chromium-driver for WebDriver clients) runs the web console's browser tests;
# awscli is Debian's AWS CLI v2 (2.9, before endpoint_url in the config): tests DIR/config-plugin
DEB_PACKAGES := mariadb-server mariadb-client postgresql postgresql-client acl pgbouncer sysbench haproxy libssl-dev gcc libmariadb-java libpostgresql-jdbc-java openjdk-17-jdk-headless libmariadbd-dev libpam0g-dev postgresql-server-dev-15 chromium chromium-driver awscli
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# pytest workers: independent test files run in parallel; engines are shared per worker.
TEST_WORKERS ?= 2
# node's database clients of the client matrix (mysql2, pg), pinned by the lock file
NODE_CLIENTS := tests/e2e/node
# the native relay's C sources and headers: a change to any rebuilds the module
RELAY_SOURCES := $(wildcard src/dbkeep/gateway/relay/*.c src/dbkeep/gateway/relay/*.h)

.PHONY: setup deb node venv run test sanitize bench clean

setup: deb node venv

deb:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@# Debian starts its own database services on install; dbkeep runs its own engines.
	@-$(SUDO) systemctl disable --now mariadb postgresql >/dev/null 2>&1 || true
	@-$(SUDO) service mariadb stop >/dev/null 2>&1 || true
	@-$(SUDO) service postgresql stop >/dev/null 2>&1 || true

# node and npm from Debian unless the machine has them already (e.g. NodeSource's nodejs,
# which carries its own npm and conflicts with Debian's npm package)
node: $(NODE_CLIENTS)/node_modules/.package-lock.json

$(NODE_CLIENTS)/node_modules/.package-lock.json: $(NODE_CLIENTS)/package.json $(NODE_CLIENTS)/package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || { \
	  echo "installing Debian packages: nodejs npm"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; }
	cd $(NODE_CLIENTS) && npm ci --no-audit --no-fund --loglevel=error

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py $(RELAY_SOURCES) $(wildcard src/dbkeep/engines/native/*.[ch])
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@# the venv's own `aws` undoes AWS CLI v1's us-east-1 endpoint override for rds (awscli_plugin.py)
	$(BIN)/python -c 'import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()["purelib"], "dbkeep-awscli.pth").write_text("import dbkeep.awscli_plugin as _dbkeep_awscli; _dbkeep_awscli.autoload()\n")'
	touch $@

run: setup
	$(BIN)/dbkeep up $(ARGS)

test: setup
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# the native relay's tests against an AddressSanitizer + UBSan build of its C code (not in `test`)
sanitize: setup
	tests/sanitize_relay.sh $(PYTEST_ARGS)

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis $(NODE_CLIENTS)/node_modules
