"""Touch targets measured in the browser: every control a thumb can press is at least 44 x 44 CSS px (WCAG 2.2's
2.5.5 size; the issue asks it of every page on a 375 px phone). No inline-link exception is taken: links in running
text are 44 px targets too."""

from __future__ import annotations

import json
from typing import Any

MIN_PX = 44
INTERACTIVE = "a, button, input, select, textarea, summary, [role=button]"

# A radio or checkbox is pressed through its label as much as through its mark, so its target is the box around
# both. Closed <details> are opened first so what they hold is measured too; hidden inputs and what is not
# rendered have no target.
_MEASURE = """([selector, minimum]) => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  const small = [];
  for (const el of document.querySelectorAll(selector)) {
    if (el.type === 'hidden' || el.closest('[hidden], [aria-hidden=true]')) continue;
    const style = getComputedStyle(el);
    if (style.display === 'none' || style.visibility === 'hidden') continue;
    let rects = [el.getBoundingClientRect()];
    if (el.type === 'radio' || el.type === 'checkbox') {
      rects = rects.concat([...el.labels].map(label => label.getBoundingClientRect()));
    }
    const left = Math.min(...rects.map(r => r.left)), right = Math.max(...rects.map(r => r.right));
    const top = Math.min(...rects.map(r => r.top)), bottom = Math.max(...rects.map(r => r.bottom));
    const width = right - left, height = bottom - top;
    if (width === 0 && height === 0) continue;
    if (width < minimum - 0.5 || height < minimum - 0.5) {
      small.push({element: el.outerHTML.slice(0, 140), width: Math.round(width), height: Math.round(height)});
    }
  }
  return small;
}"""


async def small_targets(page: Any, exclude: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The interactive elements under 44 x 44 px on the page as laid out now; `exclude`: third-party widgets."""
    selector = ", ".join(f"{s}:not({', '.join(exclude)} *)" for s in INTERACTIVE.split(", ")) if exclude \
        else INTERACTIVE
    return await page.evaluate(_MEASURE, [selector, MIN_PX])


async def assert_touch_targets(page: Any, exclude: tuple[str, ...] = ()) -> None:
    small = await small_targets(page, exclude)
    assert not small, f"targets under {MIN_PX} px on {page.url}:\n" + json.dumps(small, indent=1)
