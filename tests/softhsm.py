"""A SoftHSM2 token of a test's own, in a temporary directory.

SoftHSM2 (Debian package C{softhsm2}, installed by C{scripts/_venv.sh} when
missing and running as root) keeps its tokens in the directory its
configuration file names; C{SOFTHSM2_CONF} points at a configuration of the
test's own, so each test initialises a fresh token and no test sees
another's keys.  Without SoftHSM2 the tests skip, saying why, except under
C{CI=true}, where they fail: CI must run them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SkipTest

MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
)
PIN = "4711-test"
SO_PIN = "0815-so"


def find_module() -> str | None:
    return next((m for m in MODULES if os.path.exists(m)), None)


def why_unavailable() -> str | None:
    """Why SoftHSM2 tests cannot run here, or C{None}."""
    if shutil.which("softhsm2-util") is None:
        return "softhsm2-util is not installed (Debian package softhsm2)"
    if find_module() is None:
        return f"no SoftHSM2 module at any of {', '.join(MODULES)}"
    try:
        import pkcs11  # noqa: F401
    except ImportError:
        return "python-pkcs11 is not installed"
    return None


def require(case: Any) -> None:
    """Skip (printing why) when SoftHSM2 is missing; fail instead under CI=true."""
    reason = why_unavailable()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        case.fail(f"SoftHSM2 tests cannot run under CI=true: {reason}")
    print(f"\n*** SKIPPING SoftHSM2 test: {reason} ***")
    raise SkipTest(reason)


class SoftHsm:
    """A fresh token in a directory of the test's own; SOFTHSM2_CONF set for the test."""

    def __init__(self, case: Any, label: str = "bipgw-test") -> None:
        require(case)
        self.dir = Path(case.mktemp()).resolve()
        (self.dir / "tokens").mkdir(parents=True, mode=0o700)
        self.conf = self.dir / "softhsm2.conf"
        self.conf.write_text(
            f"directories.tokendir = {self.dir / 'tokens'}\n"
            "objectstore.backend = file\nlog.level = ERROR\n"
        )
        previous = os.environ.get("SOFTHSM2_CONF")
        os.environ["SOFTHSM2_CONF"] = str(self.conf)

        def restore() -> None:
            if previous is None:
                os.environ.pop("SOFTHSM2_CONF", None)
            else:
                os.environ["SOFTHSM2_CONF"] = previous

        case.addCleanup(restore)
        case.addCleanup(self._no_session_left, case)
        module = find_module()
        assert module is not None
        self.module = module
        self.label = label
        self.pin = PIN
        self.init_token(label)
        self.pin_file = self.dir / "pin"
        self.pin_file.write_text(PIN + "\n")
        self.pin_file.chmod(0o600)

    def _no_session_left(self, case: Any) -> None:
        # The next test's token is read only when the module is initialised
        # again, which happens once every Pkcs11Token is closed.
        from bipgw.keys import _pkcs11_token

        left = _pkcs11_token._LIBS.pop(self.module, 0)
        if left:
            import pkcs11

            pkcs11.lib(self.module).finalize()
            case.fail(f"the test left {left} PKCS#11 session(s) open")

    def init_token(self, label: str) -> None:
        subprocess.run(
            [
                "softhsm2-util",
                "--init-token",
                "--free",
                "--label",
                label,
                "--pin",
                PIN,
                "--so-pin",
                SO_PIN,
            ],
            check=True,
            capture_output=True,
            env={**os.environ, "SOFTHSM2_CONF": str(self.conf)},
        )

    def toml(self) -> str:
        """The [keys] lines naming this token."""
        return (
            'backend = "pkcs11"\n'
            f'hsm_module = "{self.module}"\n'
            f'hsm_token_label = "{self.label}"\n'
            f'hsm_pin_file = "{self.pin_file}"\n'
        )
