"""Helpers for the browser tests that act like a user: log in, take a screenshot, run axe-core, watch the console."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
AXE_ROUTE = "/__test-only__/axe.min.js"  # served by page.route in the browser fixture, never by the app
INTEGRATIONS = "/settings/general/integrations"
DEMO_PASSWORD = "demo"
CSP_WORDS = ("content security policy", "refused to", "csp violation")


@dataclass
class PageLog:
    """What the browser said while a test ran: console messages and uncaught page errors."""

    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def csp_violations(self) -> list[str]:
        return [line for line in self.console + self.errors if any(word in line.lower() for word in CSP_WORDS)]

    def assert_no_csp_violations(self) -> None:
        found = self.csp_violations()
        assert not found, "Content-Security-Policy violations:\n" + "\n".join(found)

    def assert_no_page_errors(self) -> None:
        assert not self.errors, "JavaScript errors on the page:\n" + "\n".join(self.errors)


def screenshot(page, name: str) -> Path:
    """A full-page screenshot in test-artifacts/screenshots/NAME.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def log_in(page, base_url: str, email: str, password: str = DEMO_PASSWORD) -> None:
    """Log in through the login form, as a person would."""
    page.goto(f"{base_url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    assert "/login" not in page.url, f"login as {email} failed: {page.url}"


def axe_violations(page, impacts: tuple[str, ...] = ("serious", "critical")) -> list[dict]:
    """Run axe-core on the current page; the violations of those impacts."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        origin = page.evaluate("() => window.location.origin")
        page.add_script_tag(url=origin + AXE_ROUTE)
    violations = page.evaluate(
        """async () => {
             const results = await window.axe.run(document, {resultTypes: ['violations']});
             return results.violations.map(v => ({
               id: v.id, impact: v.impact, help: v.help,
               nodes: v.nodes.map(n => ({target: n.target.join(' '), summary: n.failureSummary}))
             }));
           }"""
    )
    return [v for v in violations if v["impact"] in impacts]


def assert_accessible(page, where: str) -> None:
    found = axe_violations(page)
    lines = [
        f"{v['impact']}: {v['id']} ({v['help']}) at " + "; ".join(n["target"] for n in v["nodes"][:5]) for v in found
    ]
    assert not found, f"axe-core found serious/critical violations on {where}:\n" + "\n".join(lines)
