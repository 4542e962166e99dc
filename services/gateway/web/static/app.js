// A form sent twice (a double tap with gloves on) is harmless, since every mutation carries an idempotency key,
// but the second tap should not look like a second request: the button shows it is working.
document.addEventListener("submit", (event) => {
  const button = event.target.querySelector("button[type=submit]");
  if (button) {
    setTimeout(() => { button.disabled = true; button.textContent = "Working…"; }, 0);
  }
});

// A page waiting on something outside CallerSync (a card payment) reloads itself until it is settled.
document.addEventListener("DOMContentLoaded", () => {
  const waiting = document.querySelector("[data-refresh-ms]");
  const ms = waiting ? Number(waiting.dataset.refreshMs) : 0;
  if (ms > 0) setTimeout(() => window.location.reload(), ms);
});
