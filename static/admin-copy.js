// The admin console's copy buttons: a button with data-copy="ID" copies the text of the element
// with that id. The text stays readable and selectable without this script; the buttons are
// hidden until it runs, and where the clipboard cannot be used (an insecure origin) the button
// selects the text instead, for Ctrl+C.
"use strict";
document.querySelectorAll("button[data-copy]").forEach(function (button) {
  var label = button.textContent;
  var source = document.getElementById(button.dataset.copy);
  if (!source) {
    return;
  }
  button.hidden = false;
  function select() {
    var range = document.createRange();
    range.selectNodeContents(source);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }
  button.addEventListener("click", function () {
    var text = source.textContent.trim();
    if (!navigator.clipboard || !window.isSecureContext) {
      select();
      return;
    }
    navigator.clipboard.writeText(text).then(function () {
      button.textContent = button.dataset.copied || label;
      window.setTimeout(function () { button.textContent = label; }, 2000);
    }, select);
  });
});
