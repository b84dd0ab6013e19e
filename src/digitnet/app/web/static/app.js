// digitnet drawing page: draw on the pad, the server's network reads it.
//
// The canvas is sent as a PNG to POST /api/predict while drawing (at most one
// request every THROTTLE_MS, never two in flight) and once more when a stroke
// ends.  The server crops, scales and centres the drawing exactly as
// `digitnet predict` does, and answers with the probabilities, the 28x28
// image the network read and the hidden layers' activations.
"use strict";

(function () {
  const THROTTLE_MS = 150;
  const BRUSH_WIDTH = 20;          // px on the 280 px pad: about 2 MNIST pixels
  const SIDE = 28;                 // the network reads 28x28 images

  const body = document.body;
  const pad = document.getElementById("pad");
  const ctx = pad.getContext("2d");
  const digitEl = document.getElementById("digit");
  const messageEl = document.getElementById("message");
  const confidenceEl = document.getElementById("confidence");
  const barsEl = document.getElementById("bars");
  const inputView = document.getElementById("input-view");
  const layersEl = document.getElementById("layers");
  const sampleInfo = document.getElementById("sample-info");
  const modelInfo = document.getElementById("model-info");

  const DATASET_NAMES = { "mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "kmnist": "Kuzushiji-MNIST" };
  const datasetName = (name) => DATASET_NAMES[name] || name;

  let classes = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
  let hasInk = false;        // anything on the pad since the last Clear
  let shown = "empty";       // what the result panel shows: empty | predicted | error

  // ---------------------------------------------------------------- drawing

  function clearPad() {
    ctx.save();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, pad.width, pad.height);
    ctx.restore();
  }

  function setBrush() {
    ctx.strokeStyle = "#fff";
    ctx.fillStyle = "#fff";
    ctx.lineWidth = BRUSH_WIDTH;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
  }

  // Pointer position in canvas pixels (the pad may be shown smaller than 280 px).
  function padPoint(event) {
    const rect = pad.getBoundingClientRect();
    return {
      x: (event.clientX - rect.left) * (pad.width / rect.width),
      y: (event.clientY - rect.top) * (pad.height / rect.height),
    };
  }

  let activePointer = null;  // only one finger or pen draws at a time
  let last = null;

  pad.addEventListener("pointerdown", (event) => {
    if (activePointer !== null || (event.pointerType === "mouse" && event.button !== 0)) return;
    event.preventDefault();
    activePointer = event.pointerId;
    pad.setPointerCapture(event.pointerId);
    startDrawing();
    last = padPoint(event);
    setBrush();
    ctx.beginPath();           // a dot, so that a tap leaves a mark
    ctx.arc(last.x, last.y, BRUSH_WIDTH / 2, 0, 2 * Math.PI);
    ctx.fill();
    requestPrediction({ kind: "canvas" });
  });

  pad.addEventListener("pointermove", (event) => {
    if (event.pointerId !== activePointer) return;
    event.preventDefault();
    // Coalesced events keep fast strokes smooth where the browser batches them.
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    setBrush();
    ctx.beginPath();
    ctx.moveTo(last.x, last.y);
    for (const e of events.length ? events : [event]) {
      last = padPoint(e);
      ctx.lineTo(last.x, last.y);
    }
    ctx.stroke();
    requestPrediction({ kind: "canvas" });
  });

  function endStroke(event) {
    if (event.pointerId !== activePointer) return;
    activePointer = null;
    last = null;
    requestPrediction({ kind: "canvas" });
  }
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);
  pad.addEventListener("contextmenu", (event) => event.preventDefault());

  function startDrawing() {
    hasInk = true;
    if (!sampleInfo.hidden && !sampleInfo.dataset.drawnOver) {
      sampleInfo.dataset.drawnOver = "1";
      sampleInfo.textContent += " (drawn over)";
    }
  }

  // ------------------------------------------------------ talking to the server

  let wanted = null;         // the next prediction to ask for, or null
  let inFlight = false;
  let lastSent = -Infinity;
  let timer = null;
  let generation = 0;        // bumped by Clear / a new sample: stale answers are dropped
  let sent = 0;              // requests sent so far, shown as <body data-requests>

  function requestPrediction(job) {
    wanted = job;
    updateState();
    pump();
  }

  function pump() {
    if (inFlight || wanted === null || timer !== null) return;
    const wait = lastSent + THROTTLE_MS - performance.now();
    if (wait > 0) {
      timer = setTimeout(() => { timer = null; pump(); }, wait);
      return;
    }
    const job = wanted;
    const mine = generation;
    wanted = null;
    inFlight = true;
    lastSent = performance.now();
    body.dataset.requests = String(++sent);
    send(job)
      .then((answer) => { if (mine === generation) showAnswer(answer); })
      .catch((err) => { if (mine === generation) showError(err.message || String(err)); })
      .finally(() => { inFlight = false; updateState(); pump(); });
  }

  function canvasPng() {
    // toBlob copies the bitmap now, so later strokes do not leak into this request.
    return new Promise((resolve, reject) => {
      pad.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("could not read the canvas"))), "image/png");
    });
  }

  async function send(job) {
    let request;
    if (job.kind === "pixels") {
      request = { method: "POST", headers: { "Content-Type": "application/json" },
                  body: JSON.stringify({ pixels: job.pixels }) };
    } else {
      request = { method: "POST", headers: { "Content-Type": "image/png" }, body: await canvasPng() };
    }
    let response;
    try {
      response = await fetch("/api/predict", request);
    } catch (err) {
      throw new Error("cannot reach the digitnet server; is `digitnet serve` still running?");
    }
    const answer = await response.json().catch(() => ({}));
    if (response.ok) return answer;
    if (answer.blank) return { blank: true };
    throw new Error(answer.detail || `the server answered ${response.status}`);
  }

  // ------------------------------------------------------------- the results

  function updateState() {
    body.dataset.state = hasInk && (inFlight || wanted !== null) ? "pending" : shown;
  }

  function buildBars() {
    barsEl.replaceChildren();
    for (const name of classes) {
      const li = document.createElement("li");
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = name;
      const track = document.createElement("span");
      track.className = "track";
      const fill = document.createElement("span");
      fill.className = "fill";
      track.appendChild(fill);
      const pct = document.createElement("span");
      pct.className = "pct";
      li.append(label, track, pct);
      barsEl.appendChild(li);
    }
  }

  function showEmpty() {
    shown = "empty";
    digitEl.textContent = "";
    messageEl.textContent = "draw a digit";
    confidenceEl.textContent = "";
    for (const li of barsEl.children) {
      li.classList.remove("top");
      li.querySelector(".fill").style.width = "0%";
      li.querySelector(".pct").textContent = "";
    }
    drawInput(null);
    drawLayers([]);
    updateState();
  }

  function showAnswer(answer) {
    if (answer.blank || !hasInk) { showEmpty(); return; }
    shown = "predicted";
    const label = answer.label !== undefined ? answer.label : String(answer.digit);
    digitEl.textContent = label;
    messageEl.textContent = "the network reads";
    confidenceEl.textContent = `${(100 * answer.confidence).toFixed(1)}% sure`;
    answer.probabilities.forEach((p, i) => {
      const li = barsEl.children[i];
      if (!li) return;
      li.classList.toggle("top", i === answer.digit);
      li.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
      li.querySelector(".pct").textContent = `${(100 * p).toFixed(1)}%`;
    });
    drawInput(answer.input);
    drawLayers(answer.activations);
    updateState();
  }

  function showError(text) {
    shown = "error";
    digitEl.textContent = "";
    messageEl.textContent = text;
    confidenceEl.textContent = "";
    updateState();
  }

  // The 28x28 input, white ink on black as the network reads it.
  function drawInput(pixels) {
    const view = inputView.getContext("2d");
    const image = view.createImageData(SIDE, SIDE);
    for (let i = 0; i < SIDE * SIDE; i++) {
      const v = pixels ? Math.round(255 * pixels[i]) : 0;
      image.data[4 * i] = image.data[4 * i + 1] = image.data[4 * i + 2] = v;
      image.data[4 * i + 3] = 255;
    }
    view.putImageData(image, 0, 0);
  }

  // A dark-to-bright colour ramp for activations in [0, 1].
  const RAMP = [[0, 0, 4], [66, 10, 104], [147, 38, 103], [221, 81, 58], [252, 165, 10], [252, 255, 164]];
  function rampColour(t) {
    const x = Math.min(Math.max(t, 0), 1) * (RAMP.length - 1);
    const i = Math.min(Math.floor(x), RAMP.length - 2);
    const f = x - i;
    return RAMP[i].map((c, k) => Math.round(c + f * (RAMP[i + 1][k] - c)));
  }

  // One small heat grid per hidden layer, each scaled to its own strongest unit.
  function drawLayers(layers) {
    if (layersEl.children.length !== layers.length) layersEl.replaceChildren();
    layers.forEach((units, l) => {
      let box = layersEl.children[l];
      const n = units.length;
      const cols = Math.ceil(Math.sqrt(n));
      const rows = Math.ceil(n / cols);
      if (!box) {
        box = document.createElement("div");
        box.className = "layer";
        const canvas = document.createElement("canvas");
        canvas.width = cols;
        canvas.height = rows;
        const cell = Math.max(2, Math.min(16, Math.floor(128 / Math.max(cols, rows))));
        canvas.style.width = `${cols * cell}px`;
        canvas.style.height = `${rows * cell}px`;
        const caption = document.createElement("span");
        box.append(canvas, caption);
        layersEl.appendChild(box);
      }
      const canvas = box.querySelector("canvas");
      const view = canvas.getContext("2d");
      const image = view.createImageData(cols, rows);
      let top = 0;
      let active = 0;
      for (const v of units) { top = Math.max(top, v); if (v > 0) active++; }
      units.forEach((v, i) => {
        const [r, g, b] = rampColour(top > 0 ? v / top : 0);
        image.data.set([r, g, b, 255], 4 * i);
      });
      view.putImageData(image, 0, 0);
      box.querySelector("span").textContent = `layer ${l + 1}: ${n} units, ${active} active`;
    });
  }

  // ------------------------------------------------------------------ buttons

  function clearAll() {
    generation++;
    wanted = null;
    hasInk = false;
    sampleInfo.hidden = true;
    sampleInfo.textContent = "";
    delete sampleInfo.dataset.drawnOver;
    clearPad();
    showEmpty();
  }

  async function showSample() {
    const asked = generation;
    let sample;
    try {
      const response = await fetch("/api/sample");
      sample = await response.json();
      if (!response.ok) throw new Error(sample.detail || `the server answered ${response.status}`);
    } catch (err) {
      if (asked === generation) showError(err.message || String(err));
      return;
    }
    if (asked !== generation) return;  // cleared while it was loading
    generation++;
    hasInk = true;
    // The 28x28 digit, enlarged smoothly onto the pad.
    const small = document.createElement("canvas");
    small.width = SIDE;
    small.height = SIDE;
    const smallCtx = small.getContext("2d");
    const image = smallCtx.createImageData(SIDE, SIDE);
    sample.pixels.forEach((v, i) => {
      const c = Math.round(255 * v);
      image.data.set([c, c, c, 255], 4 * i);
    });
    smallCtx.putImageData(image, 0, 0);
    clearPad();
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(small, 0, 0, pad.width, pad.height);
    sampleInfo.textContent = `${datasetName(sample.dataset)} test image #${sample.index}, labelled ${classes[sample.label] ?? sample.label}`;
    sampleInfo.dataset.index = String(sample.index);
    sampleInfo.dataset.label = String(sample.label);
    delete sampleInfo.dataset.drawnOver;
    sampleInfo.hidden = false;
    // Predicted from its own pixels, exactly as in the test set.
    requestPrediction({ kind: "pixels", pixels: sample.pixels });
  }

  document.getElementById("clear").addEventListener("click", clearAll);
  document.getElementById("sample").addEventListener("click", showSample);
  for (const button of document.querySelectorAll(".buttons button")) {
    // A mouse click should not leave the button focused: pressing Esc next
    // would show a keyboard focus ring on it.  Tab still reaches the buttons.
    button.addEventListener("mousedown", (event) => event.preventDefault());
  }
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") clearAll();
  });

  // ------------------------------------------------------------ model summary

  async function loadModelInfo() {
    try {
      const response = await fetch("/api/model");
      const model = await response.json();
      if (!response.ok) throw new Error(model.detail);
      if (Array.isArray(model.classes) && model.classes.length !== classes.length) {
        classes = model.classes.map(String);
        buildBars();
        showEmpty();
      } else if (Array.isArray(model.classes)) {
        classes = model.classes.map(String);
      }
      const parts = [
        model.sizes.join(" \u2192 "),
        model.activations.join("/"),
        `${model.n_params.toLocaleString("en")} parameters`,
      ];
      const acc = model.accuracy || {};
      if (typeof acc.test === "number") {
        parts.push(`${(100 * acc.test).toFixed(1)}% right on the ${acc.n_test.toLocaleString("en")} ${datasetName(acc.dataset)} test images`);
      }
      if (model.recipe && model.recipe.name) parts.push(`recipe "${model.recipe.name}"`);
      modelInfo.textContent = "model: " + parts.join(" \u00b7 ");
      if (model.path) modelInfo.title = model.path;
    } catch (err) {
      modelInfo.textContent = "could not describe the model: " + (err.message || err);
    }
  }

  // The Train view's "Try it" put another network behind the API: start afresh with it.
  document.addEventListener("digitnet:model-changed", () => {
    layersEl.replaceChildren();
    clearAll();
    loadModelInfo();
  });

  clearPad();
  buildBars();
  showEmpty();
  loadModelInfo();
})();
