// Copy buttons: the only script of the UI (served from the binary; the CSP allows no inline
// script). A button's data-copy attribute holds the text.
document.addEventListener("click", function (event) {
  var button = event.target.closest("button[data-copy]");
  if (!button || !navigator.clipboard) {
    return;
  }
  navigator.clipboard.writeText(button.getAttribute("data-copy")).then(function () {
    button.textContent = "Copied";
    setTimeout(function () {
      button.textContent = "Copy";
    }, 1500);
  });
});
