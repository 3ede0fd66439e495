import copy
import os
import shutil

import pytest
from oidc_provider_mock import User as Identity
from oidc_provider_mock import run_server_in_thread

# Playwright's sync API keeps an event loop on the test thread; Django would otherwise refuse the test's own
# database calls on that thread.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

# GATEHOUSE_CHROMIUM names another build; the tests of a machine without one set it to a path that is not there.
CHROMIUM = os.environ.get("GATEHOUSE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

IDENTITIES = [
    Identity(
        sub="ada",
        claims={"email": "ada@example.com", "email_verified": True, "hd": "example.com", "name": "Ada Admin"},
    ),
    Identity(sub="vic", claims={"email": "vic@example.com", "email_verified": True, "hd": "example.com"}),
    # A personal Google account using a company address: the email matches, the hosted domain is missing.
    Identity(sub="personal", claims={"email": "personal@example.com", "email_verified": True}),
    Identity(sub="gmail", claims={"email": "someone@gmail.com", "email_verified": True}),
    Identity(sub="unverified", claims={"email": "eve@example.com", "email_verified": False, "hd": "example.com"}),
]


_SKIPPED = pytest.StashKey[int]()


def pytest_collection_modifyitems(config, items):
    """Without Chromium the browser tests are set aside, and the run ends with one line saying how to get it.

    CI (.ci/run, GATEHOUSE_REQUIRE_SERVICES=1) installs Chromium and demands them: there they run, and fail.
    """
    if os.path.exists(CHROMIUM) or os.environ.get("GATEHOUSE_REQUIRE_SERVICES") == "1":
        return
    browser = [item for item in items if item.get_closest_marker("browser")]
    if browser:
        items[:] = [item for item in items if not item.get_closest_marker("browser")]
        config.hook.pytest_deselected(items=browser)
        config.stash[_SKIPPED] = len(browser)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if skipped := config.stash.get(_SKIPPED, 0):
        terminalreporter.write_line(
            f"{skipped} browser tests skipped: Chromium is not installed (install it with: apt-get install chromium)"
        )


@pytest.fixture(scope="session")
def oidc_provider():
    with run_server_in_thread(port=0, user_claims=IDENTITIES) as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture
def gatehouse(live_server, settings, oidc_provider):
    """The live server, signing in through the local OpenID provider with the production code path."""
    providers = copy.deepcopy(settings.SOCIALACCOUNT_PROVIDERS)
    providers["openid_connect"]["APPS"][0]["settings"]["server_url"] = oidc_provider
    settings.SOCIALACCOUNT_PROVIDERS = providers
    settings.GATEHOUSE_ALLOWED_DOMAINS = ["example.com"]
    settings.GATEHOUSE_ADMIN_EMAILS = ["ada@example.com"]
    return live_server.url


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium is required here but not at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.csp_violations = []
    page.on("console", lambda msg: "Content Security Policy" in msg.text and page.csp_violations.append(msg.text))
    yield page
    context.close()
