// The dashboard: one sample a second over a WebSocket, drawn as an SVG chart of the last minute.
(function () {
  "use strict";
  var root = document.getElementById("dashboard");
  var status = document.getElementById("status");
  var chart = document.getElementById("chart");
  var samples = [];
  var SIZE = 60;
  var attempt = 0;

  function setStatus(state) {
    status.textContent = state;
    status.dataset.state = state;
  }

  function text(id, value) {
    document.getElementById(id).textContent = value;
  }

  function line(id, key, scale) {
    var points = samples.map(function (sample, i) {
      var x = (SIZE - samples.length + i) * (300 / (SIZE - 1));
      var y = 100 - (sample[key] / scale) * 95;
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    document.getElementById(id).setAttribute("points", points.join(" "));
  }

  function draw(sample) {
    samples.push(sample);
    if (samples.length > SIZE) { samples.shift(); }
    var scale = 1;
    samples.forEach(function (s) { scale = Math.max(scale, s.open_connections, s.in_per_s, s.out_per_s); });
    line("line-open", "open_connections", scale);
    line("line-in", "in_per_s", scale);
    line("line-out", "out_per_s", scale);
    chart.dataset.lastOpen = String(sample.open_connections);
    chart.dataset.samples = String(samples.length);
    text("scale", scale.toFixed(scale < 10 ? 1 : 0));
    text("open-connections", String(sample.open_connections));
    text("in-rate", sample.in_per_s.toFixed(1));
    text("out-rate", sample.out_per_s.toFixed(1));
    text("workers", String(sample.workers.length));
    var rows = Object.keys(sample.close_codes).sort().map(function (code) {
      var row = document.createElement("tr");
      var name = document.createElement("td");
      name.textContent = code;
      var count = document.createElement("td");
      count.textContent = String(sample.close_codes[code]);
      row.append(name, count);
      return row;
    });
    var body = document.querySelector("#close-codes tbody");
    body.replaceChildren.apply(body, rows);
  }

  function connect() {
    var ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + root.dataset.wsPath);
    ws.onopen = function () { attempt = 0; setStatus("connected"); };
    ws.onmessage = function (event) { draw(JSON.parse(event.data)); };
    ws.onclose = function () {
      setStatus("reconnecting");
      var ceiling = Math.min(10000, 1000 * Math.pow(1.6, attempt));
      attempt += 1;
      setTimeout(connect, Math.random() * ceiling);
    };
  }

  connect();
})();
