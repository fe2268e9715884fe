# Sourced by scripts/_venv.sh and .ci/run: Debian's chromium and chromium-driver for the
# portal's browser tests (tests/integration/test_portal_browser.py), installed only when
# missing and only when running as root with apt-get; otherwise quietly nothing (the tests
# then skip, saying why, except under CI=true, where they fail).
if { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; } \
   && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium and chromium-driver for the browser tests" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 \
         && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver \
            >/dev/null 2>&1; } \
    || echo "could not install chromium (the browser tests will say so)" >&2
fi
