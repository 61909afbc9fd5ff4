"""Checks every screen of the console can be put through: nothing wider than its box, an element
in view, and axe-core's accessibility rules (the axe.min.js that the axe-playwright-python wheel
of the test extra ships, run in the page itself)."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

from playwright.async_api import Locator, Page

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
# What a user would call a failure: axe's "serious" and "critical" impacts.
BLOCKING_IMPACTS = ("serious", "critical")
COLOUR_RULES = ["color-contrast", "link-in-text-block"]

# Elements that scroll sideways on purpose: a job's output, form controls with long values, and
# anything marked data-scroll-x. Everything else must fit its box: a table on a phone included.
OVERFLOW_SCRIPT = """() => {
  const deliberate = 'pre, textarea, input, select, .output, [data-scroll-x]';
  const name = (el) => {
    let words = el.tagName.toLowerCase();
    if (el.id) words += '#' + el.id;
    for (const cls of el.classList) words += '.' + cls;
    for (const key of ['panel', 'device', 'executionId']) {
      if (el.dataset && el.dataset[key]) words += `[data-${key}=${el.dataset[key]}]`;
    }
    const text = (el.textContent || '').trim().replace(/\\s+/g, ' ').slice(0, 40);
    return text ? `${words} "${text}"` : words;
  };
  // Whatever sits in a box clipped on purpose (a caption or header for screen readers only).
  const clipped = (el) => {
    for (let node = el; node; node = node.parentElement) {
      if (getComputedStyle(node).clip !== 'auto') return true;
    }
    return false;
  };
  const found = [];
  for (const el of document.querySelectorAll('html, body, body *')) {
    if (el.clientWidth === 0 || el.closest(deliberate)) continue;
    const style = getComputedStyle(el);
    if (style.textOverflow === 'ellipsis') continue;
    if (el.scrollWidth <= el.clientWidth + 1 || clipped(el)) continue;
    const box = el.getBoundingClientRect();
    const wide = [...el.children].find((child) => {
      const rect = child.getBoundingClientRect();
      return rect.width > 0 && (rect.right > box.right + 1 || rect.width > el.clientWidth + 1);
    });
    let words = `${name(el)} is ${el.scrollWidth}px wide in a ${el.clientWidth}px box`;
    if (wide) {
      const width = Math.round(wide.getBoundingClientRect().width);
      words += `, because of ${name(wide)} (${width}px)`;
    }
    found.push({ el, words });
  }
  // Only the innermost: an overflowing box makes each of its ancestors overflow too.
  return found
    .filter((item) => !found.some((other) => other !== item && item.el.contains(other.el)))
    .map((item) => item.words);
}"""


async def overflowing(page: Page) -> list[str]:
    """Every element wider than its box that is no deliberate sideways scroller, by name."""
    words: list[str] = await page.evaluate(OVERFLOW_SCRIPT)
    return words


async def in_view(locator: Locator) -> bool:
    """Whether the element is, at least in part, inside the window the user sees."""
    box = await locator.bounding_box()
    size = locator.page.viewport_size
    assert size is not None
    if box is None:
        return False
    return (
        box["y"] < size["height"]
        and box["y"] + box["height"] > 0
        and box["x"] < size["width"]
        and box["x"] + box["width"] > 0
    )


@cache
def axe_script() -> str:
    return (files("axe_playwright_python") / "axe.min.js").read_text(encoding="utf-8")


async def axe_violations(page: Page, rules: list[str] | None = None) -> list[str]:
    """axe-core's serious and critical violations on the page as it is (of every rule, or of
    those named), one line each: the rule, its help and the elements it found."""
    if not await page.evaluate("typeof window.axe === 'object'"):
        await page.evaluate(axe_script())
    options: dict[str, Any] = {"resultTypes": ["violations"]}
    if rules is not None:
        options["runOnly"] = {"type": "rule", "values": rules}
    result: dict[str, Any] = await page.evaluate("(options) => axe.run(document, options)", options)
    lines = []
    for violation in result["violations"]:
        if violation["impact"] not in BLOCKING_IMPACTS:
            continue
        targets = "; ".join(
            " ".join(str(part) for part in node["target"]) for node in violation["nodes"][:5]
        )
        lines.append(f"{violation['impact']} {violation['id']}: {violation['help']} at {targets}")
    return lines


async def check_screen(page: Page, screen: str, *, phone: bool) -> list[str]:
    """The screen's failures: what overflows (on a phone), and axe's serious and critical
    violations in light and in dark."""
    failures = []

    if phone:
        failures += [f"{screen}: {words}" for words in await overflowing(page)]
    await page.emulate_media(color_scheme="light")
    failures += [f"{screen} (light): {line}" for line in await axe_violations(page)]
    # The dark scheme changes colours only (app.css's custom properties): the rules that judge
    # colours are those that can find anything more there.
    await page.emulate_media(color_scheme="dark")
    failures += [f"{screen} (dark): {line}" for line in await axe_violations(page, COLOUR_RULES)]
    await page.emulate_media(color_scheme="light")
    return failures
