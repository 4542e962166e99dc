"""The app by keyboard alone: Tab from the top reaches the skip link first, then the main navigation; forms are
filled and sent with Tab, Enter and Space; every element that takes focus shows it (an outline, never none)."""

import re

from tests.web.conftest import check, sign_in
from tests.web.seed import billable_call, claim, contractor_with_wallet

_FOCUSED = """(selector) => {
  const el = document.activeElement;
  const style = getComputedStyle(el);
  return {what: `${el.tagName.toLowerCase()} ${(el.id || el.textContent || el.name || '').trim().slice(0, 40)}`,
          matches: el.matches(selector),
          visible: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2};
}"""


async def tab_to(page, selector: str, limit: int = 80) -> list[str]:
    """Presses Tab until the focused element matches `selector`; each element passed on the way must show its
    focus. Returns what was focused, in order."""
    passed = []
    for _ in range(limit):
        await page.keyboard.press("Tab")
        focused = await page.evaluate(_FOCUSED, selector)
        passed.append(focused["what"])
        assert focused["visible"], f"no visible focus on {focused['what']} (after {passed})"
        if focused["matches"]:
            return passed
    raise AssertionError(f"Tab never reached {selector}: {passed}")


async def test_a_keyboard_alone_skips_to_content_navigates_and_sends_forms(stack, desk):
    cid, address = await contractor_with_wallet(stack, 20_000)
    zip_code = await claim(stack, cid, 4500)
    decision = await billable_call(stack, cid, zip_code)
    await sign_in(desk, stack, address)

    # The skip link is the first stop, and it shows itself on the screen when focused.
    await desk.goto(f"{stack.url}/app/c/{cid}/")
    assert await tab_to(desk, "a.skip", limit=1) == ["a Skip to content"]
    assert await desk.evaluate("document.activeElement.getBoundingClientRect().left") >= 0
    await check(desk, "keyboard-skip-link")
    await desk.keyboard.press("Enter")
    assert await desk.evaluate("document.activeElement.id") == "main"

    # From the top again: past the header's one button, the main navigation.
    await desk.goto(f"{stack.url}/app/c/{cid}/")
    passed = await tab_to(desk, "nav[aria-label=Main] a", limit=3)
    assert passed == ["a Skip to content", "button Sign out", "a Overview"]
    await tab_to(desk, 'nav[aria-label=Main] a[href$="/money"]', limit=5)
    await desk.keyboard.press("Enter")
    await desk.wait_for_url(f"{stack.url}/app/c/{cid}/money")

    # Enter in a field sends its form.
    await tab_to(desk, "#threshold")
    await desk.keyboard.press("Control+A")
    await desk.keyboard.type("80")
    await desk.keyboard.press("Enter")
    await desk.get_by_text("Alert on below $80.00").wait_for()

    # A radio chosen with Space, a note typed, the button pressed with Space.
    await desk.goto(f"{stack.url}/app/c/{cid}/calls/{decision.call_id}")
    await tab_to(desk, "input[name=reason]")
    await desk.keyboard.press("Space")
    assert await desk.evaluate("document.activeElement.checked")
    await check(desk, "keyboard-radio-focused")
    await tab_to(desk, "#note", limit=2)
    await desk.keyboard.type("A robocall, by keyboard.")
    await tab_to(desk, "form[action$='/refund'] button[type=submit]", limit=1)
    await desk.keyboard.press("Space")
    await desk.wait_for_url(re.compile(".*#refund$"))
    assert "Waiting for review" in await desk.get_by_test_id("refund-state").inner_text()
    assert "A robocall, by keyboard." not in await desk.get_by_test_id("refund-state").inner_text()
