// The resend button's countdown: the server renders it disabled with the seconds left (that
// works without JavaScript); this counts down and enables it when the wait is over.
(function () {
  var button = document.getElementById("resend");
  if (!button || !button.dataset.resendIn) return;
  var until = Date.now() + Number(button.dataset.resendIn) * 1000;
  function tick() {
    var left = Math.ceil((until - Date.now()) / 1000);
    if (left <= 0) {
      button.disabled = false;
      button.textContent = button.dataset.ready;
      return;
    }
    button.textContent = button.dataset.waiting.replace("#", String(left));
    setTimeout(tick, 250);
  }
  tick();
})();
