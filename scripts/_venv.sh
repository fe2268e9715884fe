# Sourced by scripts/test and scripts/demo: make (or reuse) .venv and install
# this checkout into it, with its test extra, from the project's own files.
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]' --config-settings editable_mode=compat
# Twisted finds plugins by scanning twisted/plugins on sys.path; refresh the cache.
.venv/bin/python -c 'from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))' || true
# The cluster tests run a redis-server of their own (tests/integration/_redis_server.py).
if ! command -v redis-server >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null 2>&1 || true
fi
