/*
 * The book's preprocessing, in the browser: a port of read_rgb and preprocess
 * from src/tlhelpers/onnx_inference.py, bit for bit.  The resizing is a port
 * of Pillow's libImaging/Resample.c (bilinear, bicubic) and Geometry.c
 * (nearest), the transparency of AlphaComposite.c, and the arithmetic after
 * that is numpy's float32 arithmetic (Math.fround rounds to float32).
 *
 * Pictures are RGBA bytes, as a canvas's getImageData gives them: 4 bytes a
 * pixel, row after row.  Exactness starts from those bytes: a browser decodes
 * JPEGs (and stores a canvas's transparent pixels premultiplied) with its own
 * code, which may differ from Pillow's by a unit here and there.
 *
 * A classic script: no modules, no build step.  tests/test_page_preprocess.py
 * compares every function with Pillow and numpy.
 */
(function () {
  "use strict";

  // Pillow's filters: a weight function and its support (radius, in pixels).
  var FILTERS = {
    bilinear: {
      support: 1.0,
      weight: function (x) {
        x = Math.abs(x);
        return x < 1.0 ? 1.0 - x : 0.0;
      },
    },
    bicubic: {
      support: 2.0,
      weight: function (x) {
        // Keys' cubic with a = -0.5, written as Resample.c writes it.
        x = Math.abs(x);
        if (x < 1.0) return (1.5 * x - 2.5) * x * x + 1;
        if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * -0.5;
        return 0.0;
      },
    },
  };

  // Weights are integers scaled by 2^22: 8 bits for the pixel value, 2 bits
  // of headroom for the negative lobes of bicubic, all in a 32-bit int.
  var PRECISION_BITS = 32 - 8 - 2;
  var ONE = 1 << PRECISION_BITS;
  var HALF = 1 << (PRECISION_BITS - 1);

  /**
   * Pillow's precompute_coeffs: for each output pixel along one axis, the
   * first input pixel it reads (start), how many (count), and their weights
   * as fixed-point integers (weights[i * ksize + j]).
   */
  function coefficients(inSize, outSize, filter) {
    var scale = inSize / outSize;
    // When shrinking, the filter is stretched so that every input pixel
    // counts (antialiasing); when enlarging it keeps its width.
    var filterScale = Math.max(scale, 1.0);
    var support = filter.support * filterScale;
    var ksize = Math.ceil(support) * 2 + 1;
    var invScale = 1.0 / filterScale; // Pillow multiplies by the inverse
    var start = new Int32Array(outSize);
    var count = new Int32Array(outSize);
    var weights = new Int32Array(outSize * ksize);
    var k = new Float64Array(ksize);
    for (var xx = 0; xx < outSize; xx++) {
      var center = (xx + 0.5) * scale;
      // C's (int) cast truncates toward zero; the bounds are then clamped.
      var xmin = Math.max(Math.trunc(center - support + 0.5), 0);
      var xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
      var total = 0.0;
      for (var x = 0; x < xmax; x++) {
        k[x] = filter.weight((x + xmin - center + 0.5) * invScale);
        total += k[x];
      }
      for (x = 0; x < xmax; x++) {
        var w = total !== 0.0 ? k[x] / total : k[x];
        // Round half away from zero, then truncate, as the C code does.
        weights[xx * ksize + x] = Math.trunc(w < 0 ? -0.5 + w * ONE : 0.5 + w * ONE);
      }
      start[xx] = xmin;
      count[xx] = xmax;
    }
    return { start: start, count: count, weights: weights, ksize: ksize };
  }

  /** Pillow's clip8: a fixed-point sum back to a byte, clamped to 0..255. */
  function clip8(sum) {
    var v = sum >> PRECISION_BITS; // arithmetic shift: floor, as in C
    return v < 0 ? 0 : v > 255 ? 255 : v;
  }

  /**
   * One output pixel: the weighted sum of c.count[i] input pixels, `step`
   * bytes apart from byte `first` on (4 along a row, a row's bytes down a
   * column), written at dst[o].  The sums start at one half, so that the
   * final shift rounds.
   */
  function convolve(src, first, step, c, i, dst, o) {
    var r = HALF, g = HALF, b = HALF;
    var k = i * c.ksize;
    for (var j = 0, p = first; j < c.count[i]; j++, p += step) {
      var w = c.weights[k + j];
      r += src[p] * w;
      g += src[p + 1] * w;
      b += src[p + 2] * w;
    }
    dst[o] = clip8(r);
    dst[o + 1] = clip8(g);
    dst[o + 2] = clip8(b);
    dst[o + 3] = 255;
  }

  /** The horizontal pass on `rows` rows of src, from row `rowOffset` on. */
  function horizontalPass(src, srcWidth, c, outWidth, rows, rowOffset) {
    var out = new Uint8ClampedArray(outWidth * rows * 4);
    for (var y = 0; y < rows; y++) {
      var row = (y + rowOffset) * srcWidth;
      for (var x = 0; x < outWidth; x++) {
        convolve(src, (row + c.start[x]) * 4, 4, c, x, out, (y * outWidth + x) * 4);
      }
    }
    return out;
  }

  /** The vertical pass: every column of src, to outHeight rows. */
  function verticalPass(src, width, c, outHeight) {
    var out = new Uint8ClampedArray(width * outHeight * 4);
    for (var y = 0; y < outHeight; y++) {
      for (var x = 0; x < width; x++) {
        convolve(src, (c.start[y] * width + x) * 4, width * 4, c, y, out, (y * width + x) * 4);
      }
    }
    return out;
  }

  /**
   * Pillow's ImagingResample for bilinear and bicubic: two one-dimensional
   * passes, each rounded to bytes, so their order shows in the result (by a
   * unit or so, more for bicubic).  Pillow 13 starts with the vertical pass
   * when the height loses more than twice as many pixels as the width (read
   * from its compiled code; Pillow 12 and older always start horizontally).
   */
  function resampleConvolve(rgba, width, height, outWidth, outHeight, filter) {
    var horiz = coefficients(width, outWidth, filter);
    var vert = coefficients(height, outHeight, filter);
    if (outWidth === width) return verticalPass(rgba, width, vert, outHeight);
    if (outHeight === height) return horizontalPass(rgba, width, horiz, outWidth, height, 0);
    var shrinkX = width - outWidth, shrinkY = height - outHeight;
    if (shrinkY > 0 && shrinkY > 2 * shrinkX) {
      var tall = verticalPass(rgba, width, vert, outHeight);
      return horizontalPass(tall, width, horiz, outWidth, outHeight, 0);
    }
    // Horizontal first, on rows first..last only: those the vertical pass reads.
    var first = vert.start[0];
    var last = vert.start[outHeight - 1] + vert.count[outHeight - 1];
    for (var i = 0; i < outHeight; i++) vert.start[i] -= first;
    var wide = horizontalPass(rgba, width, horiz, outWidth, last - first, first);
    return verticalPass(wide, outWidth, vert, outHeight);
  }

  /**
   * Pillow's nearest-neighbour resize (ImagingScaleAffine): the source
   * position starts at half a step and is advanced by repeated addition,
   * so its rounding is reproduced too; truncation picks the pixel.
   */
  function resampleNearest(rgba, width, height, outWidth, outHeight) {
    var out = new Uint8ClampedArray(outWidth * outHeight * 4);
    var stepX = width / outWidth, stepY = height / outHeight;
    var column = new Int32Array(outWidth);
    for (var x = 0, xo = stepX * 0.5; x < outWidth; x++, xo += stepX) column[x] = Math.trunc(xo);
    for (var y = 0, yo = stepY * 0.5; y < outHeight; y++, yo += stepY) {
      var row = Math.trunc(yo);
      for (x = 0; x < outWidth; x++) {
        var p = (row * width + column[x]) * 4, o = (y * outWidth + x) * 4;
        out[o] = rgba[p];
        out[o + 1] = rgba[p + 1];
        out[o + 2] = rgba[p + 2];
        out[o + 3] = 255;
      }
    }
    return out;
  }

  /** A copy of the picture with alpha 255, as the resized pictures have. */
  function opaqueCopy(rgba) {
    var out = new Uint8ClampedArray(rgba);
    for (var p = 3; p < out.length; p += 4) out[p] = 255;
    return out;
  }

  /**
   * Image.resize((outWidth, outHeight), resample) of Pillow on an RGB picture.
   * @param {Uint8ClampedArray|Uint8Array} rgba width*height*4 bytes (alpha ignored)
   * @param {string} filter "bilinear", "bicubic" or "nearest"
   * @returns {Uint8ClampedArray} outWidth*outHeight*4 bytes, alpha 255
   */
  function resize(rgba, width, height, outWidth, outHeight, filter) {
    if (outWidth === width && outHeight === height) return opaqueCopy(rgba);
    if (filter === "nearest") return resampleNearest(rgba, width, height, outWidth, outHeight);
    if (!FILTERS[filter]) throw new Error("unsupported interpolation: " + filter);
    return resampleConvolve(rgba, width, height, outWidth, outHeight, FILTERS[filter]);
  }

  /**
   * What read_rgb makes of a transparent picture: Pillow's alpha_composite
   * over opaque white, in its integer arithmetic (AlphaComposite.c).
   * @param {Uint8ClampedArray|Uint8Array} rgba the picture, changed in place
   * @returns the same array, now opaque (alpha 255)
   */
  function compositeOnWhite(rgba) {
    var dst = 255, dstA = 255; // the white, opaque background
    for (var p = 0; p < rgba.length; p += 4) {
      var a = rgba[p + 3];
      if (a === 0) {
        rgba[p] = rgba[p + 1] = rgba[p + 2] = dst;
      } else {
        var outA255 = a * 255 + dstA * (255 - a);
        // 7 extra bits of precision; t / 255 is Pillow's ((t >> 8) + t) >> 8.
        var coef1 = Math.floor((a * 255 * 255 * 128) / outA255);
        var coef2 = 255 * 128 - coef1;
        for (var c = 0; c < 3; c++) {
          var t = rgba[p + c] * coef1 + dst * coef2 + (0x80 << 7);
          rgba[p + c] = (((t >> 8) + t) >> 8) >> 7;
        }
      }
      rgba[p + 3] = 255;
    }
    return rgba;
  }

  /** A size given as a number or as a one-element list, like _size in Python. */
  function sizeOf(value) {
    return Math.trunc(Array.isArray(value) ? value[0] : value);
  }

  /** Python 3's round(): halves go to the even neighbour. */
  function roundHalfEven(v) {
    var f = Math.floor(v), d = v - f;
    if (d !== 0.5) return d < 0.5 ? f : f + 1;
    return f % 2 === 0 ? f : f + 1;
  }

  /**
   * preprocess's geometry: resize the shorter side, then the crop square.
   * Returns the resized pixels and, for the crop, the offset of its top-left
   * corner in them (negative where zero padding comes first).
   */
  function layout(rgba, width, height, prep) {
    var shortSide = sizeOf(prep.resize_size), crop = sizeOf(prep.crop_size);
    var w, h;
    if (width <= height) {
      w = shortSide; h = Math.trunc((shortSide * height) / width);
    } else {
      w = Math.trunc((shortSide * width) / height); h = shortSide;
    }
    var pixels = rgba;
    if (w !== width || h !== height) {
      pixels = resize(rgba, width, height, w, h, prep.interpolation || "bilinear");
    }
    // Pad to at least crop × crop (half above/left, rounded down), then centre.
    var padY = Math.max(crop - h, 0), padX = Math.max(crop - w, 0);
    var top = roundHalfEven((h + padY - crop) / 2.0) - Math.floor(padY / 2);
    var left = roundHalfEven((w + padX - crop) / 2.0) - Math.floor(padX / 2);
    return { pixels: pixels, width: w, height: h, crop: crop, top: top, left: left };
  }

  /**
   * The picture the network sees, before normalising (for display).
   * @returns {{data: Uint8ClampedArray, width: number, height: number}} crop × crop RGBA;
   *   padding is black
   */
  function cropView(rgba, width, height, prep) {
    var g = layout(rgba, width, height, prep);
    var out = new Uint8ClampedArray(g.crop * g.crop * 4);
    for (var y = 0; y < g.crop; y++) {
      for (var x = 0; x < g.crop; x++) {
        var sy = y + g.top, sx = x + g.left, o = (y * g.crop + x) * 4;
        if (sy >= 0 && sy < g.height && sx >= 0 && sx < g.width) {
          var p = (sy * g.width + sx) * 4;
          out[o] = g.pixels[p]; out[o + 1] = g.pixels[p + 1]; out[o + 2] = g.pixels[p + 2];
        }
        out[o + 3] = 255;
      }
    }
    return { data: out, width: g.crop, height: g.crop };
  }

  /**
   * onnx_inference.preprocess: the network's float32 3 × crop × crop input
   * (channels first), (pixel / 255 - mean) / std with numpy's float32 rounding.
   * @param rgba an opaque picture (pass transparent ones through compositeOnWhite)
   * @param {{resize_size, crop_size, mean: number[], std: number[], interpolation?: string}} prep
   * @returns {{data: Float32Array, width: number, height: number}}
   */
  function toTensor(rgba, width, height, prep) {
    var view = cropView(rgba, width, height, prep);
    var crop = view.width, plane = crop * crop;
    var data = new Float32Array(3 * plane);
    for (var c = 0; c < 3; c++) {
      var mean = Math.fround(prep.mean[c]), std = Math.fround(prep.std[c]);
      for (var i = 0; i < plane; i++) {
        // numpy's float32 +, -, / equal the double operation rounded to
        // float32 (a double's 53 bits exceed 2 × 24 + 2, so no double rounding).
        var v = Math.fround(view.data[i * 4 + c] / 255);
        data[c * plane + i] = Math.fround(Math.fround(v - mean) / std);
      }
    }
    return { data: data, width: crop, height: crop };
  }

  var api = {
    resize: resize,
    compositeOnWhite: compositeOnWhite,
    toTensor: toTensor,
    cropView: cropView,
  };
  globalThis.tlbookPreprocess = api;
  if (typeof module !== "undefined" && module.exports) module.exports = api;
})();
