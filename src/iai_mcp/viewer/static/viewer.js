// The viewer's only script: every page works without it. Served from the
// package (the CSP allows same-origin scripts only, nothing inline).
"use strict";
document.addEventListener("keydown", (event) => {
  // "/" jumps to the search box, as on many sites; not while typing.
  const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName);
  if (event.key === "/" && !typing) {
    const box = document.querySelector('input[type="search"]');
    if (box) { event.preventDefault(); box.focus(); }
  }
});
