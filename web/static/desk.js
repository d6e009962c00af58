// The desk's only script, and optional: every form works without it.
// Live preview: a form marked data-live-preview presses its own Preview button as you type,
// so the preview frame shows the unsaved text drawn by the digest's template.
document.querySelectorAll("form[data-live-preview]").forEach(function (form) {
  var button = form.querySelector("button[data-preview]");
  var timer = null;
  if (!button || !form.requestSubmit) { return; }
  form.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () { form.requestSubmit(button); }, 300);
  });
});
