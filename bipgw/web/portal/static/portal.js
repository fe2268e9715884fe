// bipgw portal: the dashboard's live numbers over Server-Sent Events. No framework, no build.
"use strict";
(function () {
  var tiles = document.querySelector("[data-live]");
  if (!tiles || !window.EventSource) { return; }
  function text(id, value, digits) {
    var el = document.getElementById(id);
    if (!el) { return; }
    if (value === null || value === undefined) { el.textContent = "-"; return; }
    el.textContent = digits === undefined ? String(Math.round(value)) : value.toFixed(digits);
  }
  function table(id, values) {
    var el = document.getElementById(id);
    if (!el) { return; }
    while (el.firstChild) { el.removeChild(el.firstChild); }
    var keys = Object.keys(values);
    keys.forEach(function (k) {
      var tr = document.createElement("tr");
      var a = document.createElement("td"); a.textContent = k;
      var b = document.createElement("td"); b.textContent = String(Math.round(values[k]));
      tr.appendChild(a); tr.appendChild(b); el.appendChild(tr);
    });
  }
  var source = new EventSource(tiles.getAttribute("data-live"));
  source.addEventListener("numbers", function (event) {
    var n = JSON.parse(event.data);
    text("sessions_open", n.sessions_open);
    text("setups_per_s", n.setups_per_s, 2);
    text("apdus_per_s", n.apdus_per_s, 2);
    text("setups_total", n.setups_total);
    text("apdus_total", n.apdus_total);
    var bound = document.getElementById("smpp_bound");
    if (bound) { bound.textContent = n.smpp.bound ? "bound" : "not bound"; }
    text("smpp_window", n.smpp.window);
    text("smpp_queue", n.smpp.queue);
    ["setup", "roundtrip"].forEach(function (key) {
      ["p50", "p95", "p99"].forEach(function (p) {
        var el = document.getElementById(key + "_" + p);
        var v = n.latency_ms[key][p];
        if (el) { el.textContent = v === null ? "-" : String(v); }
      });
    });
    ["push_outcomes", "tls_handshakes", "session_ends"].forEach(function (k) { table(k, n.breakdowns[k]); });
    document.body.setAttribute("data-live-at", String(n.at));
  });
  source.addEventListener("expired", function () { source.close(); window.location = "/login"; });
  setInterval(function () {
    fetch("/charts", {credentials: "same-origin"}).then(function (r) {
      return r.ok ? r.text() : null;
    }).then(function (svg) {
      if (svg) { document.getElementById("charts").innerHTML = svg; }
    });
  }, 30000);
})();
