/*
 * Teach the book's backbone classes of your own, in the page (chapter 4).
 *
 * The reader names 2 to 5 classes and gives each a few photos.  Each photo goes
 * through the book's backbone once, in the page (live.js, onnxruntime-web), and
 * its pooled features are kept.  The head is chapter 4's prototype head,
 * tlhelpers.heads.imprint: features centred on their mean and scaled to unit
 * length, each class's weight the normalised mean of its photos, bias
 * -weight · centre.  No gradient step, so the answer is instant.  The
 * leave-one-out accuracy (tlhelpers.heads.leave_one_out) is shown as photos
 * are added.  The head can be downloaded as a classifier file that
 * `python -m tlhelpers predict` reads.
 *
 * Nothing leaves the browser.  The classes, the photos' features and small
 * thumbnails are kept in this tab's sessionStorage, so a reload or the back
 * button restores them; closing the tab forgets them.
 */
(function () {
  "use strict";

  var live = window.tlbookLive;
  var MIN_CLASSES = 2;
  var MAX_CLASSES = 5;
  var STORE = "tlbook-teach-v1";

  // ------------------------------------------------------------------ the head (heads.imprint, in float64)

  function unitRows(rows, center) {
    return rows.map(function (row) {
      var out = new Float64Array(row.length);
      var norm = 0;
      for (var k = 0; k < row.length; k++) {
        out[k] = row[k] - center[k];
        norm += out[k] * out[k];
      }
      norm = Math.max(Math.sqrt(norm), 1e-12); // torch.nn.functional.normalize's eps
      for (var j = 0; j < row.length; j++) out[j] /= norm;
      return out;
    });
  }

  /** {weight (classes × d), bias, center} from feature rows and their class indices; every class needs a row. */
  function imprint(rows, labels, classes) {
    var d = rows[0].length;
    var center = new Float64Array(d);
    rows.forEach(function (row) { for (var k = 0; k < d; k++) center[k] += row[k] / rows.length; });
    var unit = unitRows(rows, center);
    var weight = [];
    var bias = [];
    for (var c = 0; c < classes; c++) {
      var mean = new Float64Array(d);
      var n = 0;
      unit.forEach(function (u, i) {
        if (labels[i] !== c) return;
        n += 1;
        for (var k = 0; k < d; k++) mean[k] += u[k];
      });
      var norm = 0;
      for (var k = 0; k < d; k++) {
        mean[k] /= n;
        norm += mean[k] * mean[k];
      }
      norm = Math.max(Math.sqrt(norm), 1e-12);
      var b = 0;
      for (var j = 0; j < d; j++) {
        mean[j] /= norm;
        b -= mean[j] * center[j];
      }
      weight.push(mean);
      bias.push(b);
    }
    return { weight: weight, bias: bias, center: center };
  }

  function logits(head, x) {
    return head.weight.map(function (w, c) {
      var sum = head.bias[c];
      for (var k = 0; k < x.length; k++) sum += w[k] * x[k];
      return sum;
    });
  }

  function softmax(values) {
    var max = Math.max.apply(null, values);
    var exps = values.map(function (v) { return Math.exp(v - max); });
    var sum = exps.reduce(function (a, b) { return a + b; }, 0);
    return exps.map(function (e) { return e / sum; });
  }

  function argmax(values) {
    var best = 0;
    for (var i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
    return best;
  }

  /** [correct, counted]: each photo classified by the head of all the others (heads.leave_one_out). */
  function leaveOneOut(rows, labels, classes) {
    var counts = new Array(classes).fill(0);
    labels.forEach(function (l) { counts[l] += 1; });
    var correct = 0;
    var counted = 0;
    for (var i = 0; i < rows.length; i++) {
      if (counts[labels[i]] < 2) continue;
      var others = rows.filter(function (_, j) { return j !== i; });
      var otherLabels = labels.filter(function (_, j) { return j !== i; });
      var head = imprint(others, otherLabels, classes);
      correct += argmax(logits(head, rows[i])) === labels[i] ? 1 : 0;
      counted += 1;
    }
    return [correct, counted];
  }

  // ------------------------------------------------------------------ state, kept in this tab

  function bytesToBase64(array) {
    var bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
    var text = "";
    for (var i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(text);
  }

  function base64ToFloat32(text) {
    var raw = atob(text);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return new Float32Array(bytes.buffer);
  }

  function save(state) {
    var kept = state.classes.map(function (c) {
      return { name: c.name, photos: c.photos.map(function (p) {
        return { name: p.name, hash: p.hash, thumbnail: p.thumbnail, vector: bytesToBase64(Float32Array.from(p.vector)) };
      }) };
    });
    try {
      sessionStorage.setItem(STORE, JSON.stringify(kept));
      return true;
    } catch (e) {
      return false; // storage full or off: the page says so
    }
  }

  function restore() {
    try {
      var kept = JSON.parse(sessionStorage.getItem(STORE) || "null");
      if (!Array.isArray(kept)) return null;
      return kept.map(function (c) {
        return { name: String(c.name), photos: c.photos.map(function (p) {
          return { name: p.name, hash: p.hash, thumbnail: p.thumbnail, vector: Float64Array.from(base64ToFloat32(p.vector)) };
        }) };
      });
    } catch (e) {
      return null;
    }
  }

  // ------------------------------------------------------------------ the tool

  function setUpTeach(root, status) {
    var element = live.element;
    var manifest = globalThis.tlbookManifest;
    if (typeof WebAssembly !== "object" || typeof DecompressionStream !== "function") {
      live.say(status, "This browser cannot run the backbone in the page (no WebAssembly); use a current browser.", "warning");
      return;
    }
    if (!manifest) {
      live.say(status, "The in-page models were not built with this book (`make book` builds them).", "warning");
      return;
    }
    var uid = root.id;
    var list = root.querySelector(".tlbook-classes");
    var addButton = root.querySelector(".tlbook-add-class");
    var query = root.querySelector("input.tlbook-query");
    var download = root.querySelector(".tlbook-download");
    var forget = root.querySelector(".tlbook-forget");
    var loo = root.querySelector(".tlbook-loo");
    var answer = root.querySelector(":scope > .tlbook-view");
    var camera = navigator.maxTouchPoints > 0; // phones and tablets: a camera button per class
    var restored = restore();
    var state = { classes: restored || [{ name: "class 1", photos: [] }, { name: "class 2", photos: [] }], query: null };
    var busy = Promise.resolve();
    var storageNote = "";
    live.teach = { state: state, timings: [] };

    function say(text, kind) {
      live.say(status, text, kind);
    }

    function allPhotos() {
      var rows = [];
      var labels = [];
      var entries = [];
      state.classes.forEach(function (c, index) {
        c.photos.forEach(function (p) {
          rows.push(p.vector);
          labels.push(index);
          entries.push(p);
        });
      });
      return { rows: rows, labels: labels, entries: entries };
    }

    function problem() {
      if (state.classes.length < MIN_CLASSES) return "Name at least " + MIN_CLASSES + " classes.";
      var names = state.classes.map(function (c) { return c.name.trim(); });
      var empty = names.indexOf("");
      if (empty >= 0) return "Class " + (empty + 1) + " has no name: give it one.";
      var twice = names.find(function (n, i) { return names.indexOf(n) !== i; });
      if (twice) return "Two classes are called '" + twice + "': give each class its own name.";
      var bare = state.classes.find(function (c) { return c.photos.length === 0; });
      if (bare) return "Class '" + bare.name + "' has no photos yet: add at least one, or remove the class.";
      return null;
    }

    function head() {
      var all = allPhotos();
      return imprint(all.rows, all.labels, state.classes.length);
    }

    /** Save, redraw, recompute the leave-one-out accuracy and the answer; the problem that blocks a head, if any. */
    function refresh(started) {
      storageNote = save(state) ? "" : " Your browser does not let this page keep the classes: a reload will forget them.";
      renderClasses();
      var why = problem();
      download.disabled = !!why;
      if (why) {
        loo.textContent = "";
        delete loo.dataset.correct;
        delete loo.dataset.counted;
        return why;
      }
      var all = allPhotos();
      var result = leaveOneOut(all.rows, all.labels, state.classes.length);
      loo.dataset.correct = result[0];
      loo.dataset.counted = result[1];
      loo.textContent = result[1]
        ? "Leave-one-out accuracy: " + live.percent(result[0] / result[1]) + " (" + result[0] + " of " + result[1] +
          " photos, each classified by the head of all the others)."
        : "Leave-one-out accuracy needs two photos in a class.";
      if (state.query) classify();
      if (started !== undefined) live.teach.timings.push({ photos: all.rows.length, ms: performance.now() - started });
      return null;
    }

    function classify() {
      var h = head();
      var probabilities = softmax(logits(h, state.query.vector));
      var rows = state.classes.map(function (c, i) { return [c.name, probabilities[i]]; });
      rows.sort(function (a, b) { return b[1] - a[1]; });
      var view = element("div", "tlbook-result");
      view.dataset.summary = rows.map(function (r) { return r[0] + " " + live.percent(r[1]); }).join(", ");
      view.dataset.probabilities = JSON.stringify(rows);
      var picture = element("figure", "tlbook-photo");
      var img = element("img");
      img.src = state.query.thumbnail;
      img.alt = state.query.name + ": " + view.dataset.summary;
      picture.appendChild(img);
      picture.appendChild(element("figcaption", null, state.query.name));
      view.appendChild(picture);
      view.appendChild(live.bars(rows, "Your classes, computed in this page"));
      // The nearest training photo of each class (cosine similarity of the centred features).
      var all = allPhotos();
      var unit = unitRows(all.rows.concat([state.query.vector]), h.center);
      var q = unit.pop();
      var nearest = element("div", "tlbook-matches");
      state.classes.forEach(function (c, index) {
        var best = -1;
        var bestSim = -Infinity;
        unit.forEach(function (u, i) {
          if (all.labels[i] !== index) return;
          var sim = 0;
          for (var k = 0; k < u.length; k++) sim += u[k] * q[k];
          if (sim > bestSim) {
            bestSim = sim;
            best = i;
          }
        });
        var fig = element("figure", "tlbook-photo");
        var thumb = element("img");
        thumb.src = all.entries[best].thumbnail;
        thumb.alt = "nearest photo of " + c.name;
        fig.appendChild(thumb);
        fig.appendChild(element("figcaption", null, "nearest " + c.name + ": " + bestSim.toFixed(2)));
        nearest.appendChild(fig);
      });
      view.appendChild(nearest);
      answer.replaceChildren(view);
      answer.hidden = false;
    }

    function addFiles(index, files) {
      var started = performance.now();
      files = Array.from(files || []);
      if (!files.length) return busy;
      busy = busy.then(function () {
        var added = 0;
        var messages = [];
        return files.reduce(function (chain, file) {
          return chain.then(function () {
            say("Reading " + file.name + " …");
            return live.features(file).then(function (found) {
              var owner = state.classes.find(function (c) {
                return c.photos.some(function (p) { return p.hash === found.hash; });
              });
              if (owner) {
                messages.push(file.name + " is already in class '" + owner.name + "': a photo can be in one class only.");
                return;
              }
              state.classes[index].photos.push({ name: file.name, hash: found.hash, thumbnail: found.thumbnail, vector: found.vector });
              added += 1;
            }, function (error) {
              messages.push(error instanceof live.PageError ? error.message : file.name + " could not be read: " + error);
            });
          });
        }, Promise.resolve()).then(function () {
          var why = refresh(started);
          var c = state.classes[index];
          var done = "Added " + added + " photo" + (added === 1 ? "" : "s") + " to '" + c.name + "'.";
          var next = why ? " Next: " + why : " Choose a photo to classify, or add more.";
          if (messages.length) say(messages.join(" ") + (added ? " " + done : "") + storageNote, "error");
          else say(done + next + storageNote, "done");
        });
      });
      return busy;
    }

    function renderClasses() {
      list.replaceChildren();
      state.classes.forEach(function (c, index) {
        var row = element("div", "tlbook-class");
        row.dataset.index = index;
        var nameId = uid + "-name-" + index;
        var filesId = uid + "-photos-" + index;
        var label = element("label", null, "Class " + (index + 1) + ":");
        label.htmlFor = nameId;
        var name = element("input", "tlbook-class-name");
        name.type = "text";
        name.id = nameId;
        name.maxLength = 40;
        name.value = c.name;
        name.addEventListener("change", function () {
          c.name = name.value;
          var why = refresh();
          var clash = why && (why.indexOf("has no name") >= 0 || why.indexOf("Two classes") >= 0);
          say(clash ? why : "Renamed class " + (index + 1) + " to '" + c.name.trim() + "'." + storageNote, clash ? "error" : "done");
        });
        var photosLabel = element("label", null, "Add photos:");
        photosLabel.htmlFor = filesId;
        var files = element("input", "tlbook-class-photos");
        files.type = "file";
        files.id = filesId;
        files.accept = "image/*";
        files.multiple = true;
        files.addEventListener("change", function () {
          var chosen = Array.from(files.files);
          files.value = "";
          addFiles(index, chosen);
        });
        row.append(label, name, photosLabel, files);
        if (camera) {
          var cameraId = uid + "-camera-" + index;
          var cameraLabel = element("label", null, "Camera:");
          cameraLabel.htmlFor = cameraId;
          var shot = element("input");
          shot.type = "file";
          shot.id = cameraId;
          shot.accept = "image/*";
          shot.setAttribute("capture", "environment");
          shot.addEventListener("change", function () { addFiles(index, Array.from(shot.files)); shot.value = ""; });
          row.append(cameraLabel, shot);
        }
        var count = element("span", "tlbook-count", c.photos.length + " photo" + (c.photos.length === 1 ? "" : "s"));
        var remove = element("button", "tlbook-remove", "Remove class");
        remove.type = "button";
        remove.disabled = state.classes.length <= MIN_CLASSES;
        remove.addEventListener("click", function () {
          state.classes.splice(index, 1);
          var why = refresh();
          say("Removed class '" + c.name + "' and its " + c.photos.length + " photos." + (why ? " Next: " + why : "") + storageNote, "done");
        });
        row.append(count, remove);
        var thumbs = element("div", "tlbook-thumbs");
        c.photos.forEach(function (p) {
          var img = element("img");
          img.src = p.thumbnail;
          img.alt = p.name;
          img.title = p.name;
          thumbs.appendChild(img);
        });
        row.appendChild(thumbs);
        // Photos dropped anywhere on the row join this class.
        row.addEventListener("dragover", function (event) { event.preventDefault(); row.classList.add("tlbook-drop"); });
        row.addEventListener("dragleave", function () { row.classList.remove("tlbook-drop"); });
        row.addEventListener("drop", function (event) {
          event.preventDefault();
          row.classList.remove("tlbook-drop");
          addFiles(index, event.dataTransfer.files);
        });
        list.appendChild(row);
      });
      addButton.disabled = state.classes.length >= MAX_CLASSES;
    }

    addButton.addEventListener("click", function () {
      state.classes.push({ name: "class " + (state.classes.length + 1), photos: [] });
      refresh();
      say("Added class " + state.classes.length + ": name it and give it photos.", "done");
      list.querySelector(".tlbook-class:last-child input[type=text]").focus();
    });
    query.addEventListener("change", function () {
      var file = query.files && query.files[0];
      query.value = "";
      if (!file) return;
      var started = performance.now();
      busy = busy.then(function () {
        var why = problem();
        if (why) {
          say(why, "error");
          return;
        }
        say("Reading " + file.name + " …");
        return live.features(file).then(function (found) {
          state.query = { name: file.name, thumbnail: found.preview, vector: found.vector };
          classify();
          live.teach.timings.push({ query: true, ms: performance.now() - started });
          say(file.name + ": " + answer.querySelector(".tlbook-result").dataset.summary + ".", "done");
        }, function (error) {
          say(error instanceof live.PageError ? error.message : file.name + " could not be read: " + error, "error");
        });
      });
    });
    download.addEventListener("click", function () {
      var h = head();
      var payload = {
        format: "tlhelpers.classifier",
        format_version: 1,
        backbone: manifest.backbone.name,
        requested: manifest.backbone.requested,
        backbone_sha256: manifest.backbone.sha256,
        head: { weight: h.weight.map(function (w) { return Array.from(w); }), bias: h.bias },
        classes: state.classes.map(function (c) { return c.name.trim(); }),
        preprocessing: manifest.preprocessing,
        tlhelpers_version: manifest.backbone.tlhelpers_version,
      };
      var link = element("a");
      link.href = URL.createObjectURL(new Blob([JSON.stringify(payload)], { type: "application/json" }));
      link.download = "my-classes.json";
      document.body.appendChild(link);
      link.click();
      link.remove();
      say("Saved my-classes.json: classify photos with `python -m tlhelpers predict my-classes.json PHOTO …` " +
        "(it runs " + manifest.backbone.label + " in PyTorch, so its probabilities differ from the page's by " +
        "about as much as int8 weights move them).", "done");
    });
    forget.addEventListener("click", function () {
      sessionStorage.removeItem(STORE);
      state.classes = [{ name: "class 1", photos: [] }, { name: "class 2", photos: [] }];
      state.query = null;
      refresh();
      say("Forgot every class and photo of this tab.", "done");
    });
    [addButton, query, forget].forEach(function (control) { control.disabled = false; });
    var photos = allPhotos().rows.length;
    var why = refresh();
    say(restored
      ? "Restored from this tab: " + state.classes.length + " classes and " + photos + " photos (their features and " +
        "thumbnails are kept in this tab until you close it; nothing leaves your computer)." + (why ? " " + why : "")
      : "Photos stay in your browser: the backbone runs in this page, and the classes, features and thumbnails " +
        "are kept in this tab only (a reload keeps them, closing the tab forgets them). The first photo downloads " +
        live.megabytes(manifest.tasks.learn.bytes) + " for the backbone, plus " + live.megabytes(manifest.runtime.bytes) +
        " for the runtime that all pages share.");
  }

  live.setUpTeach = setUpTeach;
  live.teachMath = { imprint: imprint, leaveOneOut: leaveOneOut, logits: logits, softmax: softmax };
})();
