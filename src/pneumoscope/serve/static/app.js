// Pneumoscope web page: upload an X-ray, show the class, probabilities and a Grad-CAM heatmap.
// Plain JavaScript, no build step and no network access beyond this server.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const state = { model: null, file: null, busy: false };

  function pct(p) {
    return (100 * p).toFixed(1) + "%";
  }

  function setStatus(text) {
    $("status").textContent = text;
  }

  function showError(title, detail) {
    $("error-title").textContent = title;
    $("error-detail").textContent = detail || "";
    $("error").hidden = false;
  }

  function clearError() {
    $("error").hidden = true;
  }

  async function errorFrom(response) {
    try {
      const body = await response.json();
      if (body && body.detail) return String(body.detail);
    } catch (_) {
      /* not JSON */
    }
    return "The server answered " + response.status + " " + response.statusText + ".";
  }

  async function loadModel() {
    try {
      const response = await fetch("/model");
      if (!response.ok) throw new Error(await errorFrom(response));
      const model = await response.json();
      state.model = model;
      const task = model.task ? " · task " + model.task : "";
      $("model-line").textContent =
        "Model " + model.model_id + task + " · classes: " + model.classes.join(", ");
      const select = $("target-class");
      for (const name of model.classes) {
        const option = document.createElement("option");
        option.value = name;
        option.textContent = name;
        select.appendChild(option);
      }
      if (model.limits && model.limits.max_upload_mb) {
        $("formats-hint").textContent =
          "JPEG, PNG, BMP, TIFF, WebP or DICOM, up to " + model.limits.max_upload_mb + " MB; frontal chest X-ray.";
      }
    } catch (error) {
      $("model-line").textContent = "Model information unavailable.";
      showError("Cannot reach the model.", error.message);
    }
  }

  function chooseFile(file) {
    if (!file) return;
    state.file = file;
    analyse();
  }

  async function analyse() {
    const file = state.file;
    if (!file || state.busy) return;
    clearError();
    const limit = state.model && state.model.limits ? state.model.limits.max_upload_mb : null;
    if (file.size === 0) {
      showError("The file is empty.", file.name + " has 0 bytes. Choose the image again.");
      return;
    }
    if (limit && file.size > limit * 1024 * 1024) {
      showError("The file is too large.",
        file.name + " is " + (file.size / 1048576).toFixed(1) + " MB; this server accepts up to " + limit + " MB.");
      return;
    }
    state.busy = true;
    document.body.classList.add("busy");
    setStatus("Analysing " + file.name + "…");
    const params = new URLSearchParams({ format: "json", method: $("method").value, max_side: "1024" });
    if ($("target-class").value) params.set("class", $("target-class").value);
    const form = new FormData();
    form.append("file", file, file.name);
    try {
      const response = await fetch("/explain?" + params.toString(), { method: "POST", body: form });
      if (!response.ok) {
        const detail = await errorFrom(response);
        setStatus("");
        showError(titleFor(response.status), detail);
        return;
      }
      const result = await response.json();
      render(result, file.name);
      setStatus("Done: " + file.name + " analysed in " + Math.round(result.prediction.elapsed_ms) + " ms.");
    } catch (error) {
      setStatus("");
      showError("The server could not be reached.", error.message);
    } finally {
      state.busy = false;
      document.body.classList.remove("busy");
    }
  }

  function titleFor(status) {
    if (status === 413) return "The file is too large.";
    if (status === 415) return "This file is not a supported image.";
    if (status === 422) return "The image could not be read.";
    if (status === 503) return "The server is busy.";
    return "The image could not be analysed.";
  }

  function render(result, name) {
    const prediction = result.prediction;
    $("xray").src = "data:image/png;base64," + result.image_png;
    $("xray").alt = "Uploaded X-ray " + name;
    $("heatmap").src = "data:image/png;base64," + result.heatmap_png;
    $("heatmap").alt = "Grad-CAM heatmap for class " + result.target_class;
    applyOpacity();
    const methodName = result.method === "gradcam++" ? "Grad-CAM++" : "Grad-CAM";
    $("viewer-caption").textContent =
      name + " · " + prediction.width + " × " + prediction.height + " px · " + methodName +
      " heatmap for class \u201c" + result.target_class + "\u201d";

    $("result-label").textContent = prediction.label;
    $("result-label").dataset.label = prediction.label;
    renderBars(prediction);
    renderThreshold(prediction);
    renderDetails(prediction, result);
    renderScope(prediction);
    $("viewer-panel").hidden = false;
    $("result-panel").hidden = false;
    document.body.classList.add("has-result");
  }

  const SCOPE_TITLES = {
    adult: "This looks like an adult X-ray; the model was trained on young children.",
    child: "This looks like a child's X-ray; the model was trained on adults.",
    not_a_chest_xray: "This does not look like a chest X-ray.",
    lateral: "This is a lateral view; the model reads frontal views.",
    "multi-frame": "This file holds several frames; the model reads single radiographs.",
  };

  function scopeTitle(reason) {
    const first = String(reason || "").split("; ")[0];
    if (SCOPE_TITLES[first]) return SCOPE_TITLES[first];
    if (first.startsWith("modality ")) return "This is not a radiograph (DICOM " + first + ").";
    return "Outside what this model was trained for (" + first + ").";
  }

  function renderScope(prediction) {
    const outside = prediction.in_scope === false;
    $("scope-warning").hidden = !outside;
    $("untrusted-tag").hidden = !outside;
    $("prediction").classList.toggle("untrusted", outside);
    $("bars").classList.toggle("untrusted", outside);
    document.body.classList.toggle("out-of-scope", outside);
    if (outside) {
      $("scope-title").textContent = scopeTitle(prediction.scope_reason) + " Do not trust the result below.";
      $("scope-detail").textContent =
        "Reason: " + prediction.scope_reason + (prediction.scope_detail ? " — " + prediction.scope_detail : "") +
        ". The label is shown only for reference.";
    }
  }

  function renderBars(prediction) {
    const bars = $("bars");
    bars.textContent = "";
    const positive = positiveClass(prediction);
    for (const [name, p] of Object.entries(prediction.probabilities)) {
      const row = document.createElement("div");
      row.className = "bar-row" + (name === prediction.label ? " predicted" : "");
      const label = document.createElement("span");
      label.className = "bar-name";
      label.textContent = name;
      const track = document.createElement("div");
      track.className = "bar-track";
      track.setAttribute("role", "meter");
      track.setAttribute("aria-valuemin", "0");
      track.setAttribute("aria-valuemax", "100");
      track.setAttribute("aria-valuenow", (100 * p).toFixed(1));
      track.setAttribute("aria-label", "Probability of " + name);
      const fill = document.createElement("div");
      fill.className = "bar-fill";
      fill.style.width = Math.max(0, Math.min(100, 100 * p)) + "%";
      track.appendChild(fill);
      if (name === positive && prediction.threshold !== null && prediction.threshold !== undefined) {
        const mark = document.createElement("div");
        mark.className = "bar-threshold";
        mark.style.left = 100 * prediction.threshold + "%";
        mark.title = "Operating threshold " + pct(prediction.threshold);
        track.appendChild(mark);
      }
      const value = document.createElement("span");
      value.className = "bar-value";
      value.textContent = pct(p);
      row.append(label, track, value);
      bars.appendChild(row);
    }
  }

  function positiveClass(prediction) {
    const names = Object.keys(prediction.probabilities);
    return names.length === 2 ? names[1] : null;
  }

  function renderThreshold(prediction) {
    const positive = positiveClass(prediction);
    const text = $("threshold");
    if (positive && prediction.threshold !== null && prediction.threshold !== undefined) {
      text.textContent = "Operating threshold: \u201c" + positive + "\u201d when its probability is at least " +
        pct(prediction.threshold) + " (marked on its bar).";
    } else {
      text.textContent = "Operating rule: the most probable class.";
    }
  }

  function renderDetails(prediction, result) {
    const details = $("details");
    details.textContent = "";
    const rows = [
      ["Model", prediction.model_id],
      ["Image", prediction.width + " × " + prediction.height + " px"],
      ["In scope", prediction.in_scope ? "yes" : "no (" + prediction.scope_reason + ")"],
      ["Heatmap", (result.method === "gradcam++" ? "Grad-CAM++" : "Grad-CAM") + " for " + result.target_class],
      ["Time", Math.round(prediction.elapsed_ms) + " ms"],
    ];
    for (const [key, value] of rows) {
      const dt = document.createElement("dt");
      dt.textContent = key;
      const dd = document.createElement("dd");
      dd.textContent = value;
      details.append(dt, dd);
    }
  }

  function applyOpacity() {
    const value = Number($("opacity").value);
    $("heatmap").style.opacity = String(value / 100);
    $("opacity-value").textContent = value + "%";
  }

  function setupDropzone() {
    const zone = $("dropzone");
    const stop = (event) => {
      event.preventDefault();
      event.stopPropagation();
    };
    for (const type of ["dragenter", "dragover"]) {
      zone.addEventListener(type, (event) => {
        stop(event);
        zone.classList.add("dragging");
      });
    }
    for (const type of ["dragleave", "drop"]) {
      zone.addEventListener(type, (event) => {
        stop(event);
        zone.classList.remove("dragging");
      });
    }
    zone.addEventListener("drop", (event) => {
      const files = event.dataTransfer && event.dataTransfer.files;
      if (files && files.length) chooseFile(files[0]);
    });
    // A file dropped outside the zone must not make the browser navigate away from the page.
    for (const type of ["dragover", "drop"]) window.addEventListener(type, (event) => event.preventDefault());
    $("file-input").addEventListener("change", (event) => {
      chooseFile(event.target.files[0]);
      event.target.value = "";
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    setupDropzone();
    $("opacity").addEventListener("input", applyOpacity);
    $("method").addEventListener("change", analyse);
    $("target-class").addEventListener("change", analyse);
    loadModel();
  });
})();
