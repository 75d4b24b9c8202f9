// The sandbox's only script: the Copy button next to a generated refresh token. A file, so a strict CSP holds.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("button[data-copy-target]").forEach(function (button) {
    button.addEventListener("click", function () {
      var field = document.getElementById(button.getAttribute("data-copy-target"));
      var status = document.getElementById("copy-status");
      if (!field) { return; }
      function done(text) { if (status) { status.textContent = text; } }
      field.focus();
      field.select();
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(field.value).then(
          function () { done("Copied to the clipboard."); },
          function () { done("Press Ctrl+C (or Cmd+C) to copy the selected token."); }
        );
      } else {
        done(document.execCommand && document.execCommand("copy")
          ? "Copied to the clipboard." : "Press Ctrl+C (or Cmd+C) to copy the selected token.");
      }
    });
  });
});
