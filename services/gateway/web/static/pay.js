// Card details go from the browser to the payment provider (Stripe.js, or localstripe's stand-in in
// development) and never to CallerSync: this page only passes the client secret the wallet made.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("pay");
  if (!form || typeof Stripe === "undefined") {
    const error = document.getElementById("pay-error");
    if (error) error.textContent = "The card form could not load. Check your connection and reload the page.";
    return;
  }
  const stripe = Stripe(form.dataset.key);
  // confirm: a payment the bank wants the cardholder to confirm (3-D Secure), with the card it was made with.
  const confirming = form.dataset.mode === "confirm";
  const card = confirming ? null : stripe.elements().create("card");
  if (card) card.mount("#card");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    const secret = form.dataset.secret;
    const result = confirming
      ? await stripe.confirmCardPayment(secret, form.dataset.method ? {payment_method: form.dataset.method} : undefined)
      : form.dataset.mode === "setup"
        ? await stripe.confirmCardSetup(secret, {payment_method: {card: card}})
        : await stripe.confirmCardPayment(secret, {payment_method: {card: card}});
    if (result.error) {
      document.getElementById("pay-error").textContent =
        (result.error.message || "The card was not accepted.") + " Nothing was charged; try again.";
      button.disabled = false;
      return;
    }
    window.location.assign(form.dataset.done);
  });
});
