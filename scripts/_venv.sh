# Sourced by scripts/test and scripts/demo: make (or reuse) .venv and install
# this checkout into it, with its test extra, from the project's own files.
PY=${PYTHON:-python3}
# SoftHSM2 for the PKCS#11 key backend's tests (tests/softhsm.py): installed
# when missing and running as root; otherwise those tests say why they skip
# (and fail under CI=true).
if ! command -v softhsm2-util >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get install -y -q -o DPkg::Lock::Timeout=300 softhsm2 >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q -o DPkg::Lock::Timeout=300 softhsm2 >/dev/null 2>&1; }) \
    || echo "scripts/_venv.sh: could not install softhsm2" >&2
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]' --config-settings editable_mode=compat
# Twisted finds plugins by scanning twisted/plugins on sys.path; refresh the cache.
.venv/bin/python -c 'from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))' || true
# The browser the portal's browser tests drive (Debian packages; root only, when missing).
. scripts/_browser.sh
# The cluster tests run a redis-server of their own (tests/integration/_redis_server.py).
if ! command -v redis-server >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null 2>&1 || true
fi
