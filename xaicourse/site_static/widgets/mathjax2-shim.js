// The widget manager (html-manager 1.x) typesets output widgets with MathJax 2's
// `MathJax.Hub.Queue`; the site bundles MathJax 3. Whatever object becomes `window.MathJax`
// (Sphinx's configuration, then MathJax itself) gets a `Hub.Queue` that asks MathJax 3 to typeset.
(function () {
  var current = window.MathJax;
  function withHub(m) {
    if (m && typeof m === "object" && !m.Hub) {
      Object.defineProperty(m, "Hub", {
        enumerable: false, configurable: true,
        value: { Queue: function () {
          var M = window.MathJax;
          if (M && M.typesetPromise) { M.typesetPromise().catch(function () {}); }
        } }
      });
    }
    return m;
  }
  Object.defineProperty(window, "MathJax", {
    configurable: true,
    get: function () { return current; },
    set: function (v) { current = withHub(v); }
  });
  current = withHub(current);
})();
