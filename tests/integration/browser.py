"""Debian's chromium, driven by Selenium, for the portal's browser tests (no tests here).

The browser comes from the project's own setup: C{scripts/_venv.sh} and
C{.ci/run} install Debian's C{chromium} and C{chromium-driver} when they
are missing and the setup runs as root.  Nothing is downloaded from
elsewhere: Selenium is given both binaries, so its driver manager never
runs.  Where they are not installed, a test is skipped with the reason,
except under C{CI=true}, where it fails instead.

Selenium blocks; every call goes through L{Browser.run}, in a thread, so the
reactor (the gateway and the fleet run on it, in this process) keeps going.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--metrics-recording-only",
    "--password-store=basic",
    "--window-size=1360,900",
)
_T = TypeVar("_T")
WAIT = 20.0
"""Seconds a page or an element may take to appear (the machine may be loaded)."""


def _find(driver: Any, css: str) -> Any:
    """The element C{css} once it is on the page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
    )


def require_browser() -> None:
    """Skip (or, under CI=true, fail) unless chromium, its driver and selenium are here."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (the test extra)")
    if not missing:
        return
    reason = (
        f"no browser: {', '.join(missing)} missing (scripts/_venv.sh installs Debian's chromium"
        " and chromium-driver when run as root)"
    )
    if os.environ.get("CI", "").lower() == "true":
        raise AssertionError(reason + "; CI=true: not skipped")
    print(f"\nSKIP: {reason}")
    raise SkipTest(reason)


def _gone(element: Any) -> bool:
    """Whether C{element} left the page: selenium's C{staleness_of} knows only the stale-element
    error, while chromium also answers "Node with given id does not belong to the document" when
    the page was replaced twice (a form answered by a redirect)."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as e:
        if "does not belong to the document" in str(e):
            return True
        raise
    return False


class Browser:
    """One headless chromium (see the module docstring)."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    @classmethod
    async def start(cls) -> Browser:
        def make() -> Any:
            from selenium import webdriver
            from selenium.webdriver.chrome.service import Service

            options = webdriver.ChromeOptions()
            options.binary_location = str(CHROMIUM)
            for flag in FLAGS:
                options.add_argument(flag)
            return webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))

        return cls(await deferToThread(make))

    async def run(self, work: Callable[..., _T], *args: Any) -> _T:
        """C{work(driver, *args)} in a thread."""
        result: _T = await deferToThread(work, self.driver, *args)
        return result

    async def get(self, url: str) -> None:
        await self.run(lambda d: d.get(url))

    async def text(self, css: str) -> str:
        return await self.run(lambda d: _find(d, css).text)

    async def source(self) -> str:
        return await self.run(lambda d: d.page_source)

    async def fill(self, values: dict[str, str]) -> None:
        def work(d: Any) -> None:
            for css, value in values.items():
                element = _find(d, css)
                element.clear()
                element.send_keys(value)

        await self.run(work)

    async def click(self, css: str) -> None:
        """Click C{css} and wait for the page it leads to (a form or a link)."""

        def work(d: Any) -> None:
            from selenium.webdriver.common.by import By
            from selenium.webdriver.support.ui import WebDriverWait

            old = d.find_element(By.TAG_NAME, "html")
            _find(d, css).click()
            WebDriverWait(d, WAIT).until(lambda _: _gone(old))
            WebDriverWait(d, WAIT).until(
                lambda d: d.execute_script("return document.readyState") == "complete"
            )

        await self.run(work)

    async def screenshot(self, path: Path) -> None:
        """The whole page, beyond the window's height, as a PNG (Chrome's DevTools protocol)."""
        import base64

        path.parent.mkdir(parents=True, exist_ok=True)

        def work(d: Any) -> None:
            metrics = d.execute_cdp_cmd("Page.getLayoutMetrics", {})
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            clip = {
                "x": 0,
                "y": 0,
                "width": size["width"],
                "height": min(size["height"], 2400),
                "scale": 1,
            }
            shot = d.execute_cdp_cmd(
                "Page.captureScreenshot",
                {"format": "png", "captureBeyondViewport": True, "clip": clip},
            )
            path.write_bytes(base64.b64decode(shot["data"]))

        await self.run(work)

    async def quit(self) -> None:
        await self.run(lambda d: d.quit())
