// PNG line plots through gnuplot (installed by scripts/setup.sh); a missing gnuplot is a warning, not an error.
#pragma once

#include <string>
#include <vector>

namespace gka::cli {

struct Series {
  std::string name;
  std::vector<double> x, y;
};

// Returns false (after a warning on stderr) when gnuplot is missing or fails.
bool plot_png(const std::string& path, const std::string& title, const std::string& xlabel,
              const std::string& ylabel, const std::vector<Series>& series, bool logx = false);

}  // namespace gka::cli
