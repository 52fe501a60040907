// Minimal line / scatter plots written as PNG with libpng (the study's only extra dependency).
#pragma once

#include <string>
#include <vector>

namespace gka::study {

struct Series {
  std::string name;
  std::vector<double> x, y;  // non-finite points are skipped (a gap in a line)
  bool points = false;       // scatter instead of line
  bool dashed = false;
  int color = -1;            // index into the palette, -1 = next
};

struct Plot {
  std::string title, xlabel, ylabel;
  bool logx = false, logy = true;
  double ymin_floor = 1e-17;  // values below are drawn at this level on a log axis
  std::vector<Series> series;
};

// True when PNG output is compiled in (libpng found at configure time).
bool png_available();

// Renders `plot` to `path`; returns false (and writes nothing) when PNG output is unavailable or fails.
bool plot_write_png(const Plot& plot, const std::string& path);

}  // namespace gka::study
