/*
 * The book's explorers, live in the page without a kernel.
 *
 * A chapter stores each explorer as HTML (tlhelpers.pages): a menu or slider
 * and the view of every value, computed when the chapter ran.  This script
 * switches between those views, and answers a photo the reader uploads with
 * the chapter's own model running in the page: onnxruntime-web (WebAssembly,
 * one thread) on the files that `make book` builds (tlhelpers.page_assets).
 * The photo never leaves the browser.
 *
 * Everything is loaded with <script> elements, never with fetch(), so that the
 * book also works when opened from disk (file://).  preprocess.js prepares a
 * photo exactly as tlhelpers.onnx_inference does in Python.
 *
 * window.tlbookLive is for the book's tests and benchmarks: the timings of
 * each model load and answer.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  var STATIC = script ? script.src.slice(0, script.src.lastIndexOf("/") + 1) : "_static/";
  var MAX_MEGAPIXELS = 24;
  var TOP_K = 5;
  var CAM_ALPHA = 0.45;
  var live = (window.tlbookLive = { timings: [], loads: {} });

  /** A problem the reader should read, in one line (never a console error). */
  function PageError(message) {
    this.message = message;
  }

  // ------------------------------------------------------------------ loading

  var scripts = {};
  function loadScript(path) {
    if (!scripts[path]) {
      scripts[path] = new Promise(function (resolve, reject) {
        var element = document.createElement("script");
        element.src = STATIC + path;
        element.async = true;
        element.onload = resolve;
        element.onerror = function () {
          reject(new PageError(path + " is missing from the book's files: build the book again with `make book`."));
        };
        document.head.appendChild(element);
      });
    }
    return scripts[path];
  }

  function bytesOf(base64) {
    var text = atob(base64);
    var bytes = new Uint8Array(text.length);
    for (var i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    return bytes;
  }

  function float32Of(base64) {
    var bytes = bytesOf(base64);
    return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  }

  function asset(name) {
    return loadScript("page-assets/" + name + ".js").then(function () {
      var found = globalThis.tlbookAssets && globalThis.tlbookAssets[name];
      if (!found) throw new PageError("page-assets/" + name + ".js holds no model: build the book again.");
      return found;
    });
  }

  var runtimePromise = null;
  function runtime() {
    if (!runtimePromise) {
      runtimePromise = loadScript("onnxruntime-web/dist/ort.wasm.min.js")
        .then(function () {
          return loadScript("onnxruntime-web/dist/ort-runtime.js");
        })
        .then(function () {
          var packed = globalThis.tlbookOrtRuntime;
          var stream = new Blob([bytesOf(packed.wasmGzipBase64)]).stream().pipeThrough(new DecompressionStream("gzip"));
          return new Response(stream).arrayBuffer().then(function (wasm) {
            var ort = globalThis.ort;
            ort.env.logLevel = "error";
            ort.env.wasm.numThreads = 1; // threads need cross-origin isolation, which file:// pages lack
            ort.env.wasm.proxy = false;
            ort.env.wasm.wasmBinary = new Uint8Array(wasm);
            ort.env.wasm.wasmPaths = { mjs: URL.createObjectURL(new Blob([packed.glue], { type: "text/javascript" })) };
            return ort;
          });
        });
    }
    return runtimePromise;
  }

  var sessions = {};
  function session(name) {
    if (!sessions[name]) {
      var start = performance.now();
      sessions[name] = Promise.all([runtime(), asset(name)]).then(function (loaded) {
        var ort = loaded[0];
        var prep = loaded[1].preprocessing;
        var side = Array.isArray(prep.crop_size) ? prep.crop_size[0] : prep.crop_size;
        return ort.InferenceSession.create(bytesOf(loaded[1].model), { executionProviders: ["wasm"] })
          .then(function (created) {
            // One run on a blank picture while loading: the first run sets up kernels and buffers,
            // and the reader's first photo should not wait for that.
            var feeds = {};
            feeds[created.inputNames[0]] = new ort.Tensor("float32", new Float32Array(3 * side * side), [1, 3, side, side]);
            return created.run(feeds).then(function () {
              live.loads[name] = performance.now() - start;
              return { session: created, asset: loaded[1] };
            });
          });
      });
    }
    return sessions[name];
  }

  var TASK_MODEL = { imagenet: "backbone", "animals-cam": "backbone", search: "backbone", classifier: "classifier", learn: "backbone" };
  var TASK_DATA = { imagenet: "imagenet", "animals-cam": "animals", search: "search" };

  /** Everything a task needs: the model session, its data asset and the manifest. */
  function prepareTask(task) {
    var start = performance.now();
    var parts = [session(TASK_MODEL[task]), TASK_DATA[task] ? asset(TASK_DATA[task]) : Promise.resolve(null)];
    return Promise.all(parts).then(function (loaded) {
      live.loads[task] = performance.now() - start;
      return { model: loaded[0], data: loaded[1] };
    });
  }

  // ------------------------------------------------------------------ photos

  function kindOf(bytes) {
    var b = bytes;
    if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return "JPEG";
    if (b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return "PNG";
    if (b[0] === 0x47 && b[1] === 0x49 && b[2] === 0x46) return "GIF";
    if (b[0] === 0x42 && b[1] === 0x4d) return "BMP";
    if (b[0] === 0x52 && b[1] === 0x49 && b[2] === 0x46 && b[3] === 0x46 && b[8] === 0x57 && b[9] === 0x45) return "WebP";
    var head = new TextDecoder().decode(b.subarray(0, 512)).toLowerCase();
    if (head.indexOf("<svg") >= 0) return "SVG";
    return null;
  }

  function endsWith(bytes, pattern, window) {
    var from = Math.max(0, bytes.length - window);
    outer: for (var i = bytes.length - pattern.length; i >= from; i--) {
      for (var j = 0; j < pattern.length; j++) if (bytes[i + j] !== pattern[j]) continue outer;
      return true;
    }
    return false;
  }

  /** Width and height from a JPEG's or PNG's header, without decoding it (null when not found). */
  function headerSize(bytes, kind) {
    if (kind === "PNG" && bytes.length >= 24) {
      var view = new DataView(bytes.buffer, bytes.byteOffset);
      return [view.getUint32(16), view.getUint32(20)];
    }
    if (kind === "JPEG") {
      var i = 2;
      while (i + 9 < bytes.length) {
        if (bytes[i] !== 0xff) return null;
        var marker = bytes[i + 1];
        var length = (bytes[i + 2] << 8) | bytes[i + 3];
        if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
          return [(bytes[i + 7] << 8) | bytes[i + 8], (bytes[i + 5] << 8) | bytes[i + 6]];
        }
        i += 2 + length;
      }
    }
    return null;
  }

  function tooLarge(width, height, name) {
    var megapixels = (width * height) / 1e6;
    if (megapixels > MAX_MEGAPIXELS) {
      throw new PageError(name + " has " + megapixels.toFixed(1) + " megapixels; the page takes photos of up to " +
        MAX_MEGAPIXELS + " (the model sees 224 × 224 pixels anyway): shrink it first.");
    }
  }

  /**
   * A file as an upright RGB picture: {data (RGBA bytes, alpha 255), width, height}, as
   * onnx_inference.read_rgb makes it (EXIF orientation applied, transparency on white).
   */
  function readPhoto(file) {
    var name = file.name || "the file";
    return file.arrayBuffer().then(function (buffer) {
      var bytes = new Uint8Array(buffer);
      if (bytes.length === 0) throw new PageError(name + " is empty.");
      var kind = kindOf(bytes);
      if (kind === "SVG") {
        throw new PageError(name + " is an SVG drawing, not a photo: the model takes JPEG, PNG, GIF, WebP or BMP pictures.");
      }
      if (!kind) throw new PageError(name + " is not a picture the page can read (JPEG, PNG, GIF, WebP or BMP).");
      if (kind === "JPEG" && !endsWith(bytes, [0xff, 0xd9], 4096)) {
        throw new PageError(name + " is truncated: its JPEG data stops before the end of the picture.");
      }
      if (kind === "PNG" && !endsWith(bytes, [0x49, 0x45, 0x4e, 0x44], 64)) {
        throw new PageError(name + " is truncated: its PNG data stops before the end of the picture.");
      }
      var size = headerSize(bytes, kind);
      if (size) tooLarge(size[0], size[1], name);
      var options = { imageOrientation: "from-image", premultiplyAlpha: "none", colorSpaceConversion: "none" };
      return createImageBitmap(new Blob([bytes]), options).then(null, function () {
        throw new PageError(name + " cannot be decoded: the " + kind + " file is damaged.");
      });
    }).then(function (bitmap) {
      tooLarge(bitmap.width, bitmap.height, name);
      var canvas = document.createElement("canvas");
      canvas.width = bitmap.width;
      canvas.height = bitmap.height;
      var context = canvas.getContext("2d", { willReadFrequently: true });
      context.drawImage(bitmap, 0, 0);
      bitmap.close();
      var pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
      return { data: tlbookPreprocess.compositeOnWhite(pixels), width: canvas.width, height: canvas.height };
    });
  }

  function toDataURL(picture) {
    var canvas = document.createElement("canvas");
    canvas.width = picture.width;
    canvas.height = picture.height;
    canvas.getContext("2d").putImageData(new ImageData(new Uint8ClampedArray(picture.data), picture.width, picture.height), 0, 0);
    return canvas.toDataURL("image/jpeg", 0.9);
  }

  // ------------------------------------------------------------------ the numbers

  function softmax(values) {
    var max = -Infinity;
    for (var i = 0; i < values.length; i++) max = Math.max(max, values[i]);
    var exps = [];
    var sum = 0;
    for (var j = 0; j < values.length; j++) {
      exps.push(Math.exp(values[j] - max));
      sum += exps[j];
    }
    return exps.map(function (e) { return e / sum; });
  }

  function ranked(probabilities, labels, k) {
    var order = probabilities.map(function (p, i) { return i; });
    order.sort(function (a, b) { return probabilities[b] - probabilities[a] || a - b; });
    return order.slice(0, k).map(function (i) { return [labels[i], probabilities[i]]; });
  }

  function run(model, tensor) {
    var ort = globalThis.ort;
    var input = new ort.Tensor("float32", tensor.data, [1, 3, tensor.height, tensor.width]);
    var feeds = {};
    feeds[model.session.inputNames[0]] = input;
    return model.session.run(feeds);
  }

  function linear(weight, bias, x, classes) {
    var n = x.length;
    var out = [];
    for (var c = 0; c < classes; c++) {
      var sum = bias[c];
      for (var k = 0; k < n; k++) sum += weight[c * n + k] * x[k];
      out.push(sum);
    }
    return out;
  }

  // matplotlib's "jet", as piecewise-linear segments per channel.
  var JET = {
    r: [[0, 0], [0.35, 0], [0.66, 1], [0.89, 1], [1, 0.5]],
    g: [[0, 0], [0.125, 0], [0.375, 1], [0.64, 1], [0.91, 0], [1, 0]],
    b: [[0, 0.5], [0.11, 1], [0.34, 1], [0.65, 0], [1, 0]],
  };
  function segment(points, x) {
    for (var i = 1; i < points.length; i++) {
      if (x <= points[i][0]) {
        var a = points[i - 1];
        var b = points[i];
        return a[1] + ((b[1] - a[1]) * (x - a[0])) / (b[0] - a[0]);
      }
    }
    return points[points.length - 1][1];
  }

  /** ReLU(Σ_k w_k · maps_k), upsampled bilinearly (align_corners=False) and scaled to [0, 1], over the picture. */
  function camOverlay(picture, maps, dims, weight, classIndex) {
    var channels = dims[1];
    var h = dims[2];
    var w = dims[3];
    var cam = new Float64Array(h * w);
    for (var k = 0; k < channels; k++) {
      var wk = weight[classIndex * channels + k];
      for (var p = 0; p < h * w; p++) cam[p] += wk * maps[k * h * w + p];
    }
    var peak = 0;
    for (var q = 0; q < cam.length; q++) {
      cam[q] = Math.max(cam[q], 0);
      peak = Math.max(peak, cam[q]);
    }
    var out = new Uint8ClampedArray(picture.data);
    var W = picture.width;
    var H = picture.height;
    for (var y = 0; y < H; y++) {
      var sy = Math.min(Math.max(((y + 0.5) * h) / H - 0.5, 0), h - 1);
      var y0 = Math.floor(sy);
      var y1 = Math.min(y0 + 1, h - 1);
      var fy = sy - y0;
      for (var x = 0; x < W; x++) {
        var sx = Math.min(Math.max(((x + 0.5) * w) / W - 0.5, 0), w - 1);
        var x0 = Math.floor(sx);
        var x1 = Math.min(x0 + 1, w - 1);
        var fx = sx - x0;
        var v = (cam[y0 * w + x0] * (1 - fx) + cam[y0 * w + x1] * fx) * (1 - fy) +
          (cam[y1 * w + x0] * (1 - fx) + cam[y1 * w + x1] * fx) * fy;
        v = peak > 0 ? v / peak : 0;
        var o = (y * W + x) * 4;
        out[o] = (1 - CAM_ALPHA) * out[o] + CAM_ALPHA * 255 * segment(JET.r, v);
        out[o + 1] = (1 - CAM_ALPHA) * out[o + 1] + CAM_ALPHA * 255 * segment(JET.g, v);
        out[o + 2] = (1 - CAM_ALPHA) * out[o + 2] + CAM_ALPHA * 255 * segment(JET.b, v);
      }
    }
    return { data: out, width: W, height: H };
  }

  // ------------------------------------------------------------------ views (as tlhelpers.pages writes them)

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function percent(p) {
    return (100 * p).toFixed(1) + "%";
  }

  function rankedText(rows) {
    return rows.map(function (row) { return row[0] + " " + percent(row[1]); }).join(", ");
  }

  function figure(uri, caption, alt) {
    var node = element("figure", "tlbook-photo");
    var image = element("img");
    image.src = uri;
    image.alt = alt || caption;
    node.appendChild(image);
    node.appendChild(element("figcaption", null, caption));
    return node;
  }

  function bars(rows, title) {
    var box = element("div", "tlbook-ranking");
    if (title) box.appendChild(element("p", "tlbook-bars-title", title));
    var list = element("ol", "tlbook-bars");
    rows.forEach(function (row) {
      var item = element("li");
      item.appendChild(element("span", "tlbook-bar-label", row[0]));
      var bar = element("span", "tlbook-bar");
      bar.style.setProperty("--p", row[1].toFixed(4));
      item.appendChild(bar);
      item.appendChild(element("span", "tlbook-bar-value", percent(row[1])));
      list.appendChild(item);
    });
    box.appendChild(list);
    return box;
  }

  function predictionView(name, uri, rows, title) {
    var view = element("div", "tlbook-result");
    view.dataset.summary = rankedText(rows);
    view.dataset.probabilities = JSON.stringify(rows);
    view.appendChild(figure(uri, name, name + ": " + view.dataset.summary));
    view.appendChild(bars(rows, title));
    return view;
  }

  // ------------------------------------------------------------------ tasks: a picture in, a view out

  // Which of the build's comparisons with PyTorch (tlhelpers.page_assets) speaks for each task.
  var TASK_CHECK = {
    imagenet: "backbone (ImageNet)",
    "animals-cam": "backbone + chapter 4's head",
    search: "backbone (ImageNet)",
    classifier: "classifier (chapter 7)",
  };

  function describe(manifest, task) {
    var backbone = manifest.backbone.label;
    if (task === "classifier") return "chapter 7's exported file (static int8) on " + backbone;
    return backbone + " (int8 weights, float32 arithmetic)";
  }

  function howClose(manifest, task) {
    var check = manifest.checks[TASK_CHECK[task]];
    if (!check) return "";
    return " On " + check.photos + " test photos it gives PyTorch's top class for " +
      Math.round(100 * check["same top class"]) + "% and its probabilities are within " +
      check["largest probability gap"].toFixed(3) + " of PyTorch's.";
  }

  var TASKS = {
    imagenet: function (picture, tensor, loaded, name) {
      return run(loaded.model, tensor).then(function (out) {
        var rows = ranked(softmax(Array.from(out.logits.data)), loaded.data.categories, TOP_K);
        return predictionView(name, toDataURL(picture), rows, "ImageNet top-5, computed in this page");
      });
    },
    "animals-cam": function (picture, tensor, loaded, name) {
      return run(loaded.model, tensor).then(function (out) {
        var head = loaded.head || (loaded.head = { weight: float32Of(loaded.data.weight), bias: float32Of(loaded.data.bias) });
        var classes = loaded.data.classes;
        var probabilities = softmax(linear(head.weight, head.bias, out.pooled.data, classes.length));
        var rows = ranked(probabilities, classes, classes.length);
        var top = classes.indexOf(rows[0][0]);
        var shown = camOverlay(picture, out.maps.data, out.maps.dims, head.weight, top);
        return predictionView(name + " — CAM for '" + rows[0][0] + "'", toDataURL(shown), rows,
          "cats / dogs / pandas, computed in this page");
      });
    },
    search: function (picture, tensor, loaded, name) {
      return run(loaded.model, tensor).then(function (out) {
        var index = loaded.index || (loaded.index = {
          q: new Int8Array(bytesOf(loaded.data.q).buffer),
          scale: float32Of(loaded.data.scale),
          center: float32Of(loaded.data.center),
        });
        var d = loaded.data.features;
        var query = new Float64Array(d);
        var norm = 0;
        for (var k = 0; k < d; k++) {
          query[k] = out.pooled.data[k] - index.center[k];
          norm += query[k] * query[k];
        }
        norm = Math.max(Math.sqrt(norm), 1e-12);
        var sims = new Float64Array(index.scale.length);
        for (var i = 0; i < sims.length; i++) {
          var sum = 0;
          for (var j = 0; j < d; j++) sum += index.q[i * d + j] * query[j];
          sims[i] = (sum * index.scale[i]) / norm;
        }
        var order = Array.from(sims.keys()).sort(function (a, b) { return sims[b] - sims[a] || a - b; }).slice(0, TOP_K);
        var view = element("div", "tlbook-result");
        var matches = order.map(function (i) {
          return [i, sims[i], sims[i].toFixed(2) + " " + loaded.data.classes[loaded.data.labels[i]]];
        });
        view.dataset.summary = matches.map(function (m) { return m[2]; }).join("; ");
        view.dataset.matches = JSON.stringify(matches.map(function (m) { return [m[0], m[1]]; }));
        view.appendChild(element("p", "tlbook-bars-title", "Most similar training photos, found in this page"));
        var row = element("div", "tlbook-matches");
        row.appendChild(figure(toDataURL(picture), "query: " + name));
        matches.forEach(function (m) {
          row.appendChild(figure(loaded.data.thumbnails[m[0]], m[2]));
        });
        view.appendChild(row);
        return view;
      });
    },
    classifier: function (picture, tensor, loaded, name) {
      return run(loaded.model, tensor).then(function (out) {
        var classes = loaded.model.asset.classes;
        var values = out[loaded.model.session.outputNames[0]].data;
        var rows = ranked(softmax(Array.from(values)), classes, classes.length);
        return predictionView(name, toDataURL(picture), rows, "the exported file, run in this page");
      });
    },
  };

  /** Answer one file for one task: {view} or a PageError. */
  function answer(task, file, loaded) {
    var start = performance.now();
    var prep = loaded.model.asset.preprocessing;
    return readPhoto(file).then(function (photo) {
      var tensor = tlbookPreprocess.toTensor(photo.data, photo.width, photo.height, prep);
      var picture = tlbookPreprocess.cropView(photo.data, photo.width, photo.height, prep);
      return TASKS[task](picture, tensor, loaded, file.name).then(function (view) {
        live.timings.push({ task: task, ms: performance.now() - start });
        return view;
      });
    });
  }
  /** A photo file's pooled features by the page's backbone, a thumbnail, and a hash of its bytes (teach.js). */
  function features(file) {
    var start = performance.now();
    return Promise.all([session("backbone"), file.arrayBuffer()]).then(function (loaded) {
      var model = loaded[0];
      var prep = model.asset.preprocessing;
      return readPhoto(file).then(function (photo) {
        var tensor = tlbookPreprocess.toTensor(photo.data, photo.width, photo.height, prep);
        var picture = tlbookPreprocess.cropView(photo.data, photo.width, photo.height, prep);
        return run(model, tensor).then(function (out) {
          return {
            vector: Float64Array.from(out.pooled.data),
            thumbnail: thumbnail(picture, 64),
            preview: toDataURL(picture),
            hash: fnv1a(new Uint8Array(loaded[1])),
            ms: performance.now() - start,
          };
        });
      });
    });
  }

  function thumbnail(picture, side) {
    var full = document.createElement("canvas");
    full.width = picture.width;
    full.height = picture.height;
    full.getContext("2d").putImageData(new ImageData(new Uint8ClampedArray(picture.data), picture.width, picture.height), 0, 0);
    var small = document.createElement("canvas");
    small.width = small.height = side;
    small.getContext("2d").drawImage(full, 0, 0, side, side);
    return small.toDataURL("image/jpeg", 0.8);
  }

  /** FNV-1a over the file's bytes: the same photo added twice is recognised by it. */
  function fnv1a(bytes) {
    var hash = 0x811c9dc5;
    for (var i = 0; i < bytes.length; i++) {
      hash ^= bytes[i];
      hash = Math.imul(hash, 0x01000193) >>> 0;
    }
    return hash.toString(16) + "-" + bytes.length;
  }

  live.features = features;
  live.say = say;
  live.megabytes = megabytes;
  live.element = element;
  live.bars = bars;
  live.percent = percent;
  live.answer = answer;
  live.prepareTask = prepareTask;
  live.readPhoto = readPhoto;
  live.session = session;
  live.runtime = runtime;
  live.PageError = PageError;

  // ------------------------------------------------------------------ the controls

  function megabytes(n) {
    return n >= 1e5 ? (n / 1e6).toFixed(1) + " MB" : Math.ceil(n / 1e3) + " kB";
  }

  function say(status, text, kind) {
    status.textContent = text;
    status.className = "tlbook-status" + (kind ? " tlbook-" + kind : "");
  }

  function show(root, value) {
    root.querySelectorAll(":scope > .tlbook-view").forEach(function (view) {
      view.hidden = view.dataset.value !== value;
    });
  }

  function setUpMenu(root, config, status) {
    var menu = root.querySelector("select");
    menu.disabled = false;
    menu.addEventListener("change", function () { show(root, menu.value); });
    show(root, menu.value);
  }

  function setUpSlider(root, status) {
    var slider = root.querySelector("input[type=range]");
    var output = root.querySelector("output");
    slider.disabled = false;
    slider.addEventListener("input", function () {
      output.textContent = slider.value;
      show(root, slider.value);
    });
    show(root, slider.value);
  }

  function setUpUpload(root, config, status) {
    var input = root.querySelector("input[type=file]");
    var task = config.upload;
    var manifest = globalThis.tlbookManifest;
    if (typeof WebAssembly !== "object" || typeof DecompressionStream !== "function") {
      say(status, "This browser cannot run the model in the page (it lacks WebAssembly or DecompressionStream); " +
        "the stored views stay. A current Chrome, Firefox, Safari or Edge can.", "warning");
      return;
    }
    if (!manifest || !manifest.tasks[task]) {
      say(status, "The in-page models were not built with this book (`make book` builds them); the stored views stay.",
        "warning");
      return;
    }
    input.disabled = false;
    var note = "Choose a photo: " + describe(manifest, task) + " answers it in this page, and the photo stays on " +
      "your computer." + howClose(manifest, task) + " The first photo downloads " +
      megabytes(manifest.tasks[task].bytes) + " for this model, plus " + megabytes(manifest.runtime.bytes) +
      " for the runtime that all pages share (once per visit).";
    say(status, note);
    var loading = null;
    var count = 0;
    input.addEventListener("change", function () {
      var file = input.files && input.files[0];
      if (!file) return;
      if (!loading) {
        say(status, "Loading the model (" + megabytes(manifest.tasks[task].bytes) + ") …");
        loading = prepareTask(task);
      }
      loading.then(function (loaded) {
        say(status, "Reading " + file.name + " …");
        return answer(task, file, loaded);
      }).then(function (view) {
        count += 1;
        // The answer joins the menu, as an upload does in the Jupyter explorer.
        var value = "your photo " + count + ": " + file.name;
        var holder = element("div", "tlbook-view");
        holder.dataset.value = value;
        holder.appendChild(view);
        root.appendChild(holder);
        var menu = root.querySelector("select");
        var option = element("option", null, value);
        option.value = value;
        menu.appendChild(option);
        menu.value = value;
        show(root, value);
        say(status, file.name + ": " + view.dataset.summary + ". Answered in this page by " + describe(manifest, task) + ".", "done");
      }, function (error) {
        if (!(error instanceof PageError)) {
          error = new PageError(file.name + " could not be answered: " + (error && error.message ? error.message : error));
          loading = null; // a failed model load may be retried with the next photo
          delete sessions[TASK_MODEL[task]];
        }
        say(status, error.message, "error");
      }).then(function () {
        input.value = "";
      });
    });
  }

  function setUp(root) {
    var config;
    try {
      config = JSON.parse(root.dataset.live);
    } catch (e) {
      return;
    }
    var statusBox = root.querySelector("[id$=-status]");
    var status = statusBox.querySelector(".tlbook-status");
    say(status, "");
    if (config.control === "teach") {
      if (live.setUpTeach) live.setUpTeach(root, status); // teach.js
    } else {
      if (config.control === "menu") setUpMenu(root, config, status);
      if (config.control === "slider") setUpSlider(root, status);
      if (config.upload) setUpUpload(root, config, status);
    }
    root.classList.add("tlbook-ready");
  }

  function start() {
    var roots = document.querySelectorAll(".tlbook-live");
    if (!roots.length) return;
    var needsManifest = Array.prototype.some.call(roots, function (root) { return root.dataset.live.indexOf("upload\": \"") >= 0; });
    var ready = needsManifest ? loadScript("page-assets/manifest.js").then(null, function () { return null; }) : Promise.resolve();
    live.ready = ready.then(function () {
      roots.forEach(setUp);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
