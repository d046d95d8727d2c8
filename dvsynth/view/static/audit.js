// Keyboard shortcuts of the blind audit: a/s/d for document 1, j/k/l for document 2,
// Enter saves. Keys typed into the note are left alone.
(function () {
  var form = document.getElementById("answer");
  if (!form) return;
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (target && target.tagName === "TEXTAREA") return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "Enter") {
      event.preventDefault();
      if (form.reportValidity()) form.submit();
      return;
    }
    var input = form.querySelector('input[data-key="' + event.key.toLowerCase() + '"]');
    if (input) {
      input.checked = true;
      event.preventDefault();
    }
  });
})();
