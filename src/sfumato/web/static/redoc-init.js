// Starts Redoc on /redoc (web/reference.py). Redoc inserts <style> elements, which the page's
// Content-Security-Policy allows only with its nonce: Redoc's `nonce` option covers the styles
// it makes once started, but its bundle inserts perfect-scrollbar's stylesheet while it loads,
// before any option can reach it. So, until the document has loaded, style elements are made
// with this script's nonce (this script runs before the bundle); then createElement is restored.
const nonce = document.currentScript.nonce;
const createElement = Document.prototype.createElement;
document.createElement = function createStyledElement(...args) {
  const element = createElement.apply(this, args);
  if (element instanceof HTMLStyleElement) element.nonce = nonce;
  return element;
};

addEventListener("DOMContentLoaded", () => {
  delete document.createElement; // the prototype's again
  const root = document.getElementById("redoc");
  Redoc.init(root.dataset.openapiUrl, { nonce }, root);
});
