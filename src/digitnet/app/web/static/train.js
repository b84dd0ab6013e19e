// digitnet Train view: pick a recipe, press Train, watch the network learn on MNIST.
//
// The choices come from GET /api/train (the core's registries: activations,
// losses and which output goes with which, optimisers with their settings,
// schedules, the presets, the server's caps).  Train POSTs the recipe (the
// preset's name and the settings changed from it) to /api/train; the job's
// events then arrive as Server-Sent Events from /api/train/{job}/events:
// start, progress (curve points), weights (the first layer as 28x28 tiles),
// epoch (its record, held-out accuracy, confusion matrix) and one final
// done | diverged | cancelled | error.  "Try it" puts the network behind the
// Draw view; "Save" writes it as a model file on the server.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const body = document.body;
  const views = { draw: $("draw-view"), train: $("train-view") };
  const tabs = { draw: $("tab-draw"), train: $("tab-train") };
  const form = $("recipe");
  const el = {
    preset: $("t-preset"), presetInfo: $("t-preset-info"), hidden: $("t-hidden"),
    activation: $("t-activation"), outputLoss: $("t-output-loss"), optimizer: $("t-optimizer"),
    hyper: $("t-hyper"), lr: $("t-lr"), lrValue: $("t-lr-value"), lrHint: $("t-lr-hint"),
    batch: $("t-batch"), full: $("t-full"), epochs: $("t-epochs"), l2: $("t-l2"),
    schedule: $("t-schedule"), shift: $("t-shift"), subset: $("t-subset"), seed: $("t-seed"),
    train: $("t-train"), stop: $("t-stop"), status: $("t-status"),
    accuracy: $("t-accuracy"), accuracyLabel: $("t-accuracy-label"), epoch: $("t-epoch"),
    speed: $("t-speed"), loss: $("t-loss"), acc: $("t-acc"), message: $("t-message"),
    tryIt: $("t-try"), save: $("t-save"), saved: $("t-saved"), weights: $("t-weights"),
    confusion: $("t-confusion"),
  };

  const COLOURS = { ink: "#1d1f24", muted: "#6b6f78", line: "#dddbd4", raw: "rgba(143,167,196,0.55)",
                    loss: "#3d6ea8", accent: "#e4572e", held: "#1e7a3c" };

  // ------------------------------------------------------------------ views

  function showView(name) {
    if (!views[name]) name = "draw";
    for (const [key, view] of Object.entries(views)) view.hidden = key !== name;
    for (const [key, tab] of Object.entries(tabs)) {
      if (key === name) tab.setAttribute("aria-current", "page");
      else tab.removeAttribute("aria-current");
    }
    body.dataset.view = name;
    if (name === "train" && !options) loadOptions();
  }
  window.addEventListener("hashchange", () => showView(location.hash.slice(1)));

  // ---------------------------------------------------------- the choices

  let options = null;         // GET /api/train
  let preset = null;          // the chosen preset's settings

  async function loadOptions() {
    try {
      const response = await fetch("/api/train");
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.detail || `the server answered ${response.status}`);
      options = answer;
    } catch (err) {
      setStatus(`cannot load the training options: ${err.message || err}`, "error");
      return;
    }
    fillSelect(el.preset, Object.keys(options.presets));
    fillSelect(el.activation, options.activations);
    const pairs = [];
    for (const output of options.activations) {
      for (const loss of options.valid_losses[output] || []) pairs.push([`${output}|${loss}`, `${output} + ${loss}`]);
    }
    fillSelect(el.outputLoss, pairs);
    fillSelect(el.optimizer, Object.keys(options.optimizers));
    fillSelect(el.schedule, options.schedules);
    el.epochs.max = options.limits.max_epochs;
    el.subset.max = options.limits.max_subset;
    el.preset.value = options.default_preset;
    applyPreset(options.default_preset);
    if (options.disabled) {
      setStatus(options.disabled, "error");
      el.train.disabled = true;
      el.train.dataset.off = "1";
    }
    // A job already running (or the last one) is shown as if it had just been started here.
    const jobs = options.jobs || [];
    const running = jobs.find((job) => job.state === "running");
    if (running) watch(running.job, running);
    else if (jobs.length) watch(jobs[jobs.length - 1].job, jobs[jobs.length - 1]);
  }

  function fillSelect(select, items) {
    select.replaceChildren();
    for (const item of items) {
      const [value, text] = Array.isArray(item) ? item : [item, item];
      const option = document.createElement("option");
      option.value = value;
      option.textContent = text;
      select.appendChild(option);
    }
  }

  function applyPreset(name) {
    preset = options.presets[name];
    el.presetInfo.textContent = `${preset.source}; published: ${preset.published}.`;
    el.hidden.value = preset.hidden_layers.join(", ");
    el.activation.value = preset.activation || "relu";
    el.outputLoss.value = `${preset.output}|${preset.loss}`;
    el.optimizer.value = preset.optimizer;
    buildHyper(preset.optimizer_options);
    setLr(preset.lr);
    el.full.checked = preset.batch_size === null;
    el.batch.value = preset.batch_size === null ? "" : preset.batch_size;
    el.batch.disabled = el.full.checked;
    el.epochs.value = preset.epochs;
    el.l2.value = preset.l2;
    el.schedule.value = preset.schedule;
    el.shift.value = preset.shift;
  }

  // The chosen optimiser's own settings (momentum, beta1, ...), from its registry entry.
  function buildHyper(values) {
    el.hyper.replaceChildren();
    const settings = options.optimizers[el.optimizer.value].hyperparameters;
    for (const [name, help] of Object.entries(settings)) {
      const label = document.createElement("label");
      label.className = "field";
      label.title = help;
      label.append(`${name} `);
      const input = document.createElement("input");
      input.type = "number";
      input.step = "any";
      input.name = name;
      input.dataset.hyper = name;
      input.placeholder = (help.match(/default ([^)]+)\)/) || [])[1] || "default";
      if (values && values[name] !== undefined) input.value = values[name];
      label.appendChild(input);
      el.hyper.appendChild(label);
    }
  }

  // The learning rate on a log scale, with Nielsen's advice about it.
  function lrFromSlider() { return Number(Math.pow(10, Number(el.lr.value)).toPrecision(2)); }
  function setLr(value) {
    el.lr.value = String(Math.log10(value));
    showLr();
  }
  function showLr() {
    const lr = lrFromSlider();
    el.lrValue.textContent = String(lr);
    const ratio = lr / preset.lr;
    let verdict = "about the preset's own rate";
    if (ratio < 1 / 30) verdict = "<b>likely too low</b> for this recipe: the loss will fall slowly";
    else if (ratio > 10) verdict = "<b>likely too high</b> for this recipe: the loss may jump about or blow up";
    else if (ratio < 0.5) verdict = "below the preset's rate";
    else if (ratio > 2) verdict = "above the preset's rate";
    el.lrHint.innerHTML = `Too low and it learns slowly; just right and the loss falls fast and steadily; ` +
      `too high and it overshoots, jumps about, or blows up. ${lr} is ${verdict} (${preset.lr}).`;
  }

  el.preset.addEventListener("change", () => applyPreset(el.preset.value));
  el.optimizer.addEventListener("change", () => buildHyper(el.optimizer.value === preset.optimizer ? preset.optimizer_options : null));
  el.lr.addEventListener("input", showLr);
  el.full.addEventListener("change", () => { el.batch.disabled = el.full.checked; });

  // The request: the preset's name and every setting that differs from it.
  function recipeBody() {
    const out = { preset: el.preset.value };
    const hidden = el.hidden.value.trim() === "" ? [] :
      el.hidden.value.split(/[\s,]+/).filter((part) => part !== "").map(Number);
    if (hidden.join(",") !== preset.hidden_layers.join(",")) out.hidden_layers = hidden;
    if (hidden.length && el.activation.value !== preset.activation) out.activation = el.activation.value;
    const [output, loss] = el.outputLoss.value.split("|");
    if (output !== preset.output || loss !== preset.loss) { out.output = output; out.loss = loss; }
    if (el.optimizer.value !== preset.optimizer) out.optimizer = el.optimizer.value;
    for (const input of el.hyper.querySelectorAll("input")) {
      const given = input.value.trim();
      if (given === "") continue;
      const value = Number(given);
      if (el.optimizer.value === preset.optimizer && preset.optimizer_options[input.name] === value) continue;
      out[input.name] = value;
    }
    const lr = lrFromSlider();
    if (lr !== preset.lr) out.lr = lr;
    const batch = el.full.checked ? null : Number(el.batch.value);
    if (batch !== preset.batch_size) out.batch_size = batch;
    const numbers = { epochs: el.epochs, l2: el.l2, shift: el.shift };
    for (const [name, input] of Object.entries(numbers)) {
      if (input.value.trim() !== "" && Number(input.value) !== preset[name]) out[name] = Number(input.value);
    }
    if (el.schedule.value !== preset.schedule) out.schedule = el.schedule.value;
    if (el.subset.value.trim() !== "") out.subset = Number(el.subset.value);
    if (el.seed.value.trim() !== "") out.seed = Number(el.seed.value);
    return out;
  }

  // ---------------------------------------------------------------- a job

  let source = null;          // the EventSource of the job shown
  let job = null;             // its id
  let run = null;             // what its events have said so far

  function newRun() {
    return { batches: 1, epochs: 1, points: [], smooth: [], smoothAcc: [], epochs_seen: [], heldOut: "validation",
             state: "running", n_train: 0 };
  }

  function setStatus(text, kind) {
    el.status.textContent = text;
    el.status.classList.toggle("error", kind === "error");
  }

  function setState(state) {
    body.dataset.train = state;
    const running = state === "running" || state === "starting";
    el.train.disabled = running || el.train.dataset.off === "1";
    el.stop.disabled = !running;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!options) return;
    const request = recipeBody();
    setState("starting");
    setStatus("starting…");
    let response;
    let answer;
    try {
      response = await fetch("/api/train", { method: "POST", headers: { "Content-Type": "application/json" },
                                             body: JSON.stringify(request) });
      answer = await response.json().catch(() => ({}));
    } catch (err) {
      setState("idle");
      setStatus("cannot reach the digitnet server; is `digitnet serve` still running?", "error");
      return;
    }
    if (response.status === 202) {
      watch(answer.job, answer);
      return;
    }
    setState("idle");
    if (response.status === 409) {
      const running = (answer.detail || "").match(/\(([0-9a-f]{12})\)/);
      setStatus(answer.detail || "another job is running", "error");
      if (running && running[1] !== job) watch(running[1], null);
      return;
    }
    setStatus(answer.detail || `the server answered ${response.status}`, "error");
  });

  el.stop.addEventListener("click", async () => {
    if (!job) return;
    el.stop.disabled = true;
    setStatus("stopping…");
    try {
      await fetch(`/api/train/${job}`, { method: "DELETE" });
    } catch (err) {
      setStatus("cannot reach the digitnet server", "error");
    }
  });

  el.tryIt.addEventListener("click", async () => {
    if (!job) return;
    const answer = await post(`/api/train/${job}/use`);
    if (!answer) return;
    setStatus(`the Draw view now reads with job ${job}'s network`);
    document.dispatchEvent(new CustomEvent("digitnet:model-changed", { detail: { job } }));
    location.hash = "#draw";
  });

  el.save.addEventListener("click", async () => {
    if (!job) return;
    el.save.disabled = true;
    const answer = await post(`/api/train/${job}/save`);
    el.save.disabled = false;
    if (!answer) return;
    el.saved.textContent = `saved as ${answer.name} (${answer.path}); open it with: digitnet serve ${answer.path}`;
    el.saved.dataset.name = answer.name;
  });

  async function post(url) {
    try {
      const response = await fetch(url, { method: "POST" });
      const answer = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(answer.detail || `the server answered ${response.status}`);
      return answer;
    } catch (err) {
      setStatus(err.message || String(err), "error");
      return null;
    }
  }

  // Follow a job's events; a job that has finished replays them all at once.
  function watch(id, status) {
    if (source) source.close();
    job = id;
    run = newRun();
    el.message.hidden = true;
    el.saved.textContent = "";
    delete el.saved.dataset.name;
    el.tryIt.disabled = el.save.disabled = true;
    el.accuracy.textContent = "–";
    el.epoch.textContent = "–";
    el.speed.textContent = "–";
    clearCanvas(el.weights);
    delete el.weights.dataset.step;
    drawConfusion(null);
    drawCharts();
    setState(status && status.state !== "running" ? status.state : "running");
    setStatus(`job ${id}: connecting…`);
    source = new EventSource(`/api/train/${id}/events`);
    const on = (name, handler) => source.addEventListener(name, (event) => handler(JSON.parse(event.data)));
    on("start", onStart);
    on("progress", onProgress);
    on("weights", onWeights);
    on("epoch", onEpoch);
    for (const name of ["done", "diverged", "cancelled", "error"]) on(name, (data) => onFinal(name, data));
    source.onerror = () => {
      // EventSource reconnects by itself (sending Last-Event-ID); a closed stream after
      // the final event is closed here first, so this is a real interruption.
      if (source && source.readyState === EventSource.CLOSED) setStatus(`lost the connection to job ${id}`, "error");
    };
  }

  function onStart(data) {
    run.batches = data.batches;
    run.epochs = data.epochs;
    run.n_train = data.n_train;
    run.heldOut = data.held_out.set;
    el.accuracyLabel.textContent = "training accuracy (so far)";
    const r = data.recipe;
    setStatus(`job ${data.job}: ${r.sizes.join("→")}, ${r.optimizer} lr ${r.lr}, ` +
              `${data.n_train.toLocaleString("en")} images, ${data.epochs} epoch${data.epochs === 1 ? "" : "s"}; ` +
              `scored on ${data.held_out.size.toLocaleString("en")} ${data.held_out.set} images`);
  }

  function onProgress(data) {
    for (const point of data.points) {
      if (point.loss === null || !Number.isFinite(point.loss)) continue;   // a blow-up: the curve stops
      const last = run.smooth.length ? run.smooth[run.smooth.length - 1] : null;
      const lastAcc = run.smoothAcc.length ? run.smoothAcc[run.smoothAcc.length - 1] : null;
      const k = 0.4;
      run.points.push(point);
      run.smooth.push(last === null ? point.loss : last + k * (point.loss - last));
      run.smoothAcc.push(lastAcc === null ? point.accuracy : lastAcc + k * (point.accuracy - lastAcc));
    }
    el.epoch.textContent = `${data.epoch} / ${data.epochs}`;
    if (!run.epochs_seen.length && run.smoothAcc.length) {
      el.accuracy.textContent = percent(run.smoothAcc[run.smoothAcc.length - 1]);
    }
    if (data.seconds > 0 && run.n_train) {
      const images = ((data.epoch - 1) * run.n_train) + Math.min(data.batch / data.batches, 1) * run.n_train;
      el.speed.textContent = Math.round(images / data.seconds).toLocaleString("en");
    }
    drawCharts();
  }

  function onEpoch(data) {
    run.epochs_seen.push({ epoch: data.epoch, loss: data.record.loss, accuracy: data.record.accuracy,
                           held: data.validation.accuracy });
    el.accuracy.textContent = percent(data.validation.accuracy);
    el.accuracyLabel.textContent = `${data.validation.set} accuracy, epoch ${data.epoch}`;
    el.epoch.textContent = `${data.epoch} / ${data.epochs}`;
    if (data.images_per_second) el.speed.textContent = Math.round(data.images_per_second).toLocaleString("en");
    drawConfusion(data.validation.confusion);
    drawCharts();
  }

  function onFinal(name, data) {
    if (source) { source.close(); source = null; }
    run.state = name;
    setState(name);
    el.tryIt.disabled = el.save.disabled = !data.usable;
    if (name === "done") {
      const test = data.test_accuracy === null ? "" : `; ${percent(data.test_accuracy)} on the 10,000 test images`;
      setStatus(`job ${job}: done in ${data.seconds.toFixed(1)} s${test}. Try it on your own drawings.`);
      showMessage(`Trained: ${data.epochs_done} epoch${data.epochs_done === 1 ? "" : "s"}${test}.`, true);
    } else if (name === "diverged") {
      setStatus(`job ${job}: diverged`, "error");
      showMessage(`The loss blew up, so training stopped (${data.detail}).`, false, data.suggested_lr);
    } else if (name === "cancelled") {
      setStatus(`job ${job}: ${data.detail}`);
    } else {
      setStatus(`job ${job}: ${data.detail}`, "error");
    }
    drawCharts();
  }

  function showMessage(text, ok, suggestedLr) {
    el.message.replaceChildren(text);
    el.message.classList.toggle("ok", ok);
    if (suggestedLr) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = `Use ${Number(suggestedLr.toPrecision(2))}`;
      button.addEventListener("click", () => { setLr(suggestedLr); el.message.hidden = true; });
      el.message.appendChild(button);
    }
    el.message.hidden = false;
  }

  function percent(x) { return `${(100 * x).toFixed(1)}%`; }

  // --------------------------------------------------------------- drawing

  function clearCanvas(canvas) {
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
  }

  // Both curves against epochs (0 to the run's last), raw points faint, smoothed as a line.
  function drawCharts() {
    const xs = run.points.map((p) => (p.step) / run.batches);
    const losses = run.points.map((p) => p.loss);
    const positive = losses.length && losses.every((v) => v > 0) && run.epochs_seen.every((e) => e.loss > 0);
    drawChart(el.loss, {
      // an epoch's loss is its mean over the epoch: drawn at the epoch's middle
      xs, raw: losses, smooth: run.smooth, dots: run.epochs_seen.map((e) => [e.epoch - 0.5, e.loss]),
      log: positive, label: "loss", colour: COLOURS.loss,
    });
    drawChart(el.acc, {
      xs, raw: run.points.map((p) => p.accuracy), smooth: run.smoothAcc,
      dots: run.epochs_seen.map((e) => [e.epoch, e.held]), percent: true, label: "accuracy",
      colour: COLOURS.accent, dotColour: COLOURS.held,
    });
    el.loss.dataset.points = String(run.points.length);
    el.acc.dataset.points = String(run.points.length);
  }

  function drawChart(canvas, series) {
    const ctx = canvas.getContext("2d");
    const W = canvas.width;
    const H = canvas.height;
    const pad = { left: 46, right: 10, top: 10, bottom: 22 };
    ctx.clearRect(0, 0, W, H);
    const values = series.smooth.concat(series.raw, series.dots.map((d) => d[1]))
      .filter((v) => v !== null && Number.isFinite(v) && (!series.log || v > 0));
    let lo;
    let hi;
    if (series.percent) {
      lo = values.length ? Math.max(0, Math.floor(Math.min(...values) * 10) / 10) : 0;
      hi = 1;
    } else if (values.length) {
      lo = Math.min(...values);
      hi = Math.max(...values);
      if (hi === lo) { hi = lo * 1.5 + 1e-9; lo = lo / 1.5; }
    } else {
      lo = 0; hi = 1;
    }
    const inset = 6;   // room for the last epoch's dot
    const tx = (x) => pad.left + inset + (W - pad.left - pad.right - 2 * inset) * (x / Math.max(run.epochs, 1e-9));
    const f = series.log ? Math.log10 : (v) => v;
    const ty = (v) => {
      const t = (f(v) - f(lo)) / ((f(hi) - f(lo)) || 1);
      return H - pad.bottom - (H - pad.top - pad.bottom) * Math.min(Math.max(t, -0.02), 1.02);
    };
    // frame and labels
    ctx.strokeStyle = COLOURS.line;
    ctx.lineWidth = 1;
    ctx.strokeRect(pad.left + 0.5, pad.top + 0.5, W - pad.left - pad.right - 1, H - pad.top - pad.bottom - 1);
    ctx.fillStyle = COLOURS.muted;
    ctx.font = "11px system-ui, sans-serif";
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    const label = (v) => (series.percent ? `${Math.round(100 * v)}%`
      : (v >= 1e4 || (v > 0 && v < 1e-3)) ? v.toExponential(0) : v.toPrecision(2));
    ctx.fillText(label(hi), pad.left - 5, ty(hi));
    ctx.fillText(label(lo), pad.left - 5, ty(lo));
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const step = Math.max(1, Math.ceil(run.epochs / 10));
    for (let e = 0; e <= run.epochs; e += step) ctx.fillText(String(e), tx(e), H - pad.bottom + 5);
    ctx.save();
    ctx.beginPath();
    ctx.rect(pad.left, pad.top, W - pad.left - pad.right, H - pad.top - pad.bottom);
    ctx.clip();
    // raw points
    ctx.fillStyle = COLOURS.raw;
    series.raw.forEach((v, i) => { if (v !== null) ctx.fillRect(tx(series.xs[i]) - 1, ty(v) - 1, 2, 2); });
    // the smoothed line
    ctx.strokeStyle = series.colour;
    ctx.lineWidth = 2;
    ctx.beginPath();
    series.smooth.forEach((v, i) => (i ? ctx.lineTo(tx(series.xs[i]), ty(v)) : ctx.moveTo(tx(series.xs[i]), ty(v))));
    ctx.stroke();
    // one dot per epoch
    ctx.fillStyle = series.dotColour || series.colour;
    for (const [x, v] of series.dots) {
      if (v === null || !Number.isFinite(v)) continue;
      ctx.beginPath();
      ctx.arc(tx(x), ty(v), 3.5, 0, 2 * Math.PI);
      ctx.fill();
    }
    ctx.restore();
  }

  // The first layer's weights: one 28x28 tile per unit, white at 0, orange positive, blue negative.
  function onWeights(data) {
    const bytes = Uint8Array.from(atob(data.data), (c) => c.charCodeAt(0));
    const side = data.side;
    const n = data.units;
    const cols = Math.ceil(Math.sqrt(n));
    const rows = Math.ceil(n / cols);
    const gap = 1;
    const width = cols * (side + gap) + gap;
    const height = rows * (side + gap) + gap;
    const canvas = el.weights;
    if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(width, height);
    image.data.fill(255);
    for (let u = 0; u < n; u++) {
      const x0 = gap + (u % cols) * (side + gap);
      const y0 = gap + Math.floor(u / cols) * (side + gap);
      for (let p = 0; p < side * side; p++) {
        const v = (bytes[u * side * side + p] - 127.5) / 127.5;    // -1..1
        const [r, g, b] = v >= 0 ? mix([255, 255, 255], [228, 87, 46], v) : mix([255, 255, 255], [47, 94, 170], -v);
        const i = 4 * ((y0 + Math.floor(p / side)) * width + x0 + (p % side));
        image.data[i] = r; image.data[i + 1] = g; image.data[i + 2] = b; image.data[i + 3] = 255;
      }
    }
    ctx.putImageData(image, 0, 0);
    canvas.dataset.step = String(data.step);
    $("t-weights-caption").textContent = `first layer, step ${data.step.toLocaleString("en")}: ${n} of its ` +
      `${data.of} units, each one's 784 weights as a 28×28 tile (orange positive, blue negative)`;
  }

  function mix(a, b, t) { return a.map((c, k) => Math.round(c + t * (b[k] - c))); }

  // Rows: the true digit; columns: what the network said; shade: share of the row.
  function drawConfusion(matrix) {
    const canvas = el.confusion;
    const ctx = canvas.getContext("2d");
    const W = canvas.width;
    const margin = 22;
    const cell = (W - margin) / 10;
    ctx.clearRect(0, 0, W, canvas.height);
    ctx.font = "10px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    for (let k = 0; k < 10; k++) {
      ctx.fillStyle = COLOURS.muted;
      ctx.fillText(String(k), margin + (k + 0.5) * cell, margin / 2);
      ctx.fillText(String(k), margin / 2, margin + (k + 0.5) * cell);
    }
    if (!matrix) return;
    for (let i = 0; i < 10; i++) {
      const total = matrix[i].reduce((a, b) => a + b, 0) || 1;
      for (let j = 0; j < 10; j++) {
        const share = matrix[i][j] / total;
        const target = i === j ? [30, 122, 60] : [228, 87, 46];
        const t = i === j ? share : Math.min(1, share * 5);
        const [r, g, b] = mix([255, 255, 255], target, t);
        ctx.fillStyle = `rgb(${r},${g},${b})`;
        ctx.fillRect(margin + j * cell, margin + i * cell, cell - 1, cell - 1);
        if (matrix[i][j]) {
          ctx.fillStyle = t > 0.55 ? "#fff" : COLOURS.ink;
          ctx.fillText(String(matrix[i][j]), margin + (j + 0.5) * cell, margin + (i + 0.5) * cell);
        }
      }
    }
  }

  // ------------------------------------------------------------------ start

  setState("idle");
  showView(location.hash.slice(1) || "draw");
})();
