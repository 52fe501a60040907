#include "study/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>

#include "study/font5x7.h"

#if GKA_STUDY_HAVE_PNG
#include <png.h>
#endif

namespace gka::study {
namespace {

constexpr int kWidth = 960, kHeight = 600;
constexpr int kLeft = 104, kRight = 330, kTop = 40, kBottom = 60;  // plot-area margins (legend on the right)

struct Rgb {
  uint8_t r, g, b;
};

constexpr Rgb kPalette[] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},  {148, 103, 189},
                            {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207},
                            {255, 187, 120}, {100, 100, 255}, {0, 0, 0}};

struct Canvas {
  int w, h;
  std::vector<uint8_t> px;
  Canvas(int width, int height) : w(width), h(height), px(static_cast<size_t>(width * height * 3), 255) {}
  void set(int x, int y, Rgb c) {
    if (x < 0 || y < 0 || x >= w || y >= h) return;
    const size_t i = (static_cast<size_t>(y) * static_cast<size_t>(w) + static_cast<size_t>(x)) * 3;
    if (i + 2 >= px.size()) return;
    px[i] = c.r;
    px[i + 1] = c.g;
    px[i + 2] = c.b;
  }
  void rect(int x0, int y0, int x1, int y1, Rgb c) {
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x) set(x, y, c);
  }
  // Bresenham line, `thick` pixels wide; dashed lines draw 8 pixels on, 6 off.
  void line(int x0, int y0, int x1, int y1, Rgb c, int thick, bool dashed, int& phase) {
    const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
    const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (;;) {
      if (!dashed || (phase % 14) < 8) rect(x0 - thick / 2, y0 - thick / 2, x0 + (thick - 1) / 2, y0 + (thick - 1) / 2, c);
      ++phase;
      if (x0 == x1 && y0 == y1) break;
      const int e2 = 2 * err;
      if (e2 >= dy) {
        err += dy;
        x0 += sx;
      }
      if (e2 <= dx) {
        err += dx;
        y0 += sy;
      }
    }
  }
  void text(int x, int y, const std::string& s, Rgb c, int scale = 2) {
    for (char ch : s) {
      const int code = static_cast<unsigned char>(ch);
      if (code >= 32 && code < 127) {
        for (int col = 0; col < 5; ++col)
          for (int row = 0; row < 7; ++row)
            if (kFont5x7[code - 32][col] >> row & 1)
              rect(x + col * scale, y + row * scale, x + col * scale + scale - 1, y + row * scale + scale - 1, c);
      }
      x += 6 * scale;
    }
  }
  void text_vertical(int x, int y, const std::string& s, Rgb c, int scale = 2) {  // bottom to top
    for (char ch : s) {
      const int code = static_cast<unsigned char>(ch);
      if (code >= 32 && code < 127) {
        for (int col = 0; col < 5; ++col)
          for (int row = 0; row < 7; ++row)
            if (kFont5x7[code - 32][col] >> row & 1)
              rect(x + row * scale, y - col * scale, x + row * scale + scale - 1, y - col * scale + scale - 1, c);
      }
      y -= 6 * scale;
    }
  }
};

int text_width(const std::string& s, int scale = 2) { return static_cast<int>(s.size()) * 6 * scale; }

std::string tick_label(double v, bool log) {
  char buf[32];
  if (log) {
    const int e = static_cast<int>(std::lround(std::log10(v)));
    if (e >= 0 && e <= 4) std::snprintf(buf, sizeof buf, "%g", std::pow(10.0, e));
    else std::snprintf(buf, sizeof buf, "1e%d", e);
  } else {
    std::snprintf(buf, sizeof buf, "%g", std::abs(v) < 1e-9 ? 0.0 : v);
  }
  return buf;
}

struct Axis {
  bool log;
  double lo, hi;  // in axis units (log10 for a log axis)
  double map(double v) const { return log ? std::log10(v) : v; }
};

Axis axis_make(std::vector<double> values, bool log, double floor) {
  Axis a{log, 0, 1};
  double lo = INFINITY, hi = -INFINITY;
  for (double v : values) {
    if (!std::isfinite(v)) continue;
    if (log) v = std::max(v, floor);
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  if (!std::isfinite(lo)) return a;
  if (log) {
    a.lo = std::floor(std::log10(lo));
    a.hi = std::ceil(std::log10(hi));
    if (a.hi <= a.lo) a.hi = a.lo + 1;
  } else {
    const double span = hi > lo ? hi - lo : 1.0;
    a.lo = lo - 0.02 * span;
    a.hi = hi + 0.02 * span;
  }
  return a;
}

std::vector<double> ticks_make(const Axis& a) {
  std::vector<double> t;
  if (a.log) {
    const int decades = static_cast<int>(a.hi - a.lo);
    const int step = std::max(1, (decades + 9) / 10);
    for (int e = static_cast<int>(a.lo); e <= static_cast<int>(a.hi); e += step) t.push_back(std::pow(10.0, e));
  } else {
    const double raw = (a.hi - a.lo) / 8;
    const double mag = std::pow(10.0, std::floor(std::log10(raw)));
    double step = mag;
    for (double m : {1.0, 2.0, 5.0, 10.0})
      if (m * mag >= raw) {
        step = m * mag;
        break;
      }
    for (double v = std::ceil(a.lo / step) * step; v <= a.hi + 1e-12 * step; v += step) t.push_back(v);
  }
  return t;
}

}  // namespace

bool png_available() { return GKA_STUDY_HAVE_PNG != 0; }

bool plot_write_png(const Plot& plot, const std::string& path) {
#if !GKA_STUDY_HAVE_PNG
  (void)plot;
  (void)path;
  return false;
#else
  Canvas cv(kWidth, kHeight);
  std::vector<double> xs, ys;
  for (const Series& s : plot.series) {
    xs.insert(xs.end(), s.x.begin(), s.x.end());
    ys.insert(ys.end(), s.y.begin(), s.y.end());
  }
  const Axis ax = axis_make(xs, plot.logx, 1e-300), ay = axis_make(ys, plot.logy, plot.ymin_floor);
  const int x0 = kLeft, x1 = kWidth - kRight, y0 = kTop, y1 = kHeight - kBottom;
  auto px = [&](double v) {
    return x0 + static_cast<int>(std::lround((ax.map(v) - ax.lo) / (ax.hi - ax.lo) * (x1 - x0)));
  };
  auto py = [&](double v) {
    if (plot.logy) v = std::max(v, plot.ymin_floor);
    return y1 - static_cast<int>(std::lround((ay.map(v) - ay.lo) / (ay.hi - ay.lo) * (y1 - y0)));
  };
  const Rgb grid{225, 225, 225}, black{0, 0, 0};
  for (double t : ticks_make(ax)) {
    const int x = px(t);
    for (int y = y0; y <= y1; ++y) cv.set(x, y, grid);
    const std::string l = tick_label(t, ax.log);
    cv.text(x - text_width(l) / 2, y1 + 8, l, black);
  }
  for (double t : ticks_make(ay)) {
    const int y = py(t);
    for (int x = x0; x <= x1; ++x) cv.set(x, y, grid);
    const std::string l = tick_label(t, ay.log);
    cv.text(x0 - 8 - text_width(l), y - 7, l, black);
  }
  int phase = 0;
  cv.line(x0, y0, x1, y0, black, 1, false, phase);
  cv.line(x0, y1, x1, y1, black, 1, false, phase);
  cv.line(x0, y0, x0, y1, black, 1, false, phase);
  cv.line(x1, y0, x1, y1, black, 1, false, phase);
  cv.text((x0 + x1) / 2 - text_width(plot.title) / 2, 12, plot.title, black);
  cv.text((x0 + x1) / 2 - text_width(plot.xlabel) / 2, kHeight - 26, plot.xlabel, black);
  cv.text_vertical(8, (y0 + y1) / 2 + text_width(plot.ylabel) / 2, plot.ylabel, black);

  int next_color = 0, legend_y = y0 + 4;
  for (const Series& s : plot.series) {
    const Rgb c = kPalette[(s.color >= 0 ? s.color : next_color++) % 13];
    bool have_prev = false;
    int prev_x = 0, prev_y = 0;
    phase = 0;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      const bool ok = std::isfinite(s.x[i]) && std::isfinite(s.y[i]) && (!plot.logx || s.x[i] > 0);
      if (!ok) {
        have_prev = false;
        continue;
      }
      const int x = std::clamp(px(s.x[i]), x0, x1), y = std::clamp(py(s.y[i]), y0, y1);
      if (s.points) {
        cv.rect(x - 2, y - 2, x + 2, y + 2, c);
      } else if (have_prev) {
        cv.line(prev_x, prev_y, x, y, c, 2, s.dashed, phase);
      } else if (s.x.size() == 1) {
        cv.rect(x - 2, y - 2, x + 2, y + 2, c);
      }
      prev_x = x;
      prev_y = y;
      have_prev = true;
    }
    // legend entry
    const int lx = x1 + 14;
    if (s.points) cv.rect(lx + 10, legend_y + 5, lx + 14, legend_y + 9, c);
    else cv.line(lx, legend_y + 7, lx + 24, legend_y + 7, c, 2, s.dashed, phase);
    cv.text(lx + 32, legend_y + 1, s.name.substr(0, 23), black);
    legend_y += 20;
  }

  FILE* volatile fp = std::fopen(path.c_str(), "wb");  // volatile: survives png's longjmp
  if (!fp) return false;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info || setjmp(png_jmpbuf(png))) {
    if (png) png_destroy_write_struct(&png, info ? &info : nullptr);
    std::fclose(fp);
    return false;
  }
  png_init_io(png, fp);
  png_set_IHDR(png, info, static_cast<png_uint_32>(cv.w), static_cast<png_uint_32>(cv.h), 8, PNG_COLOR_TYPE_RGB,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < cv.h; ++y) png_write_row(png, &cv.px[static_cast<size_t>(y * cv.w * 3)]);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return std::fclose(fp) == 0;
#endif
}

}  // namespace gka::study
