#include "plot.h"

#include <cstdio>
#include <cstdlib>

namespace gka::cli {

namespace {
std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}
}  // namespace

bool plot_png(const std::string& path, const std::string& title, const std::string& xlabel,
              const std::string& ylabel, const std::vector<Series>& series, bool logx) {
  if (series.empty()) return false;
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    std::fprintf(stderr, "warning: gnuplot not found, skipping %s (bash scripts/setup.sh installs it)\n", path.c_str());
    return false;
  }
  FILE* gp = popen("gnuplot 2>/dev/null", "w");
  if (!gp) return false;
  std::fprintf(gp, "set terminal pngcairo size 900,560 noenhanced\nset output %s\n", quoted(path).c_str());
  std::fprintf(gp, "set title %s\nset xlabel %s\nset ylabel %s\nset grid\nset key outside right\n",
               quoted(title).c_str(), quoted(xlabel).c_str(), quoted(ylabel).c_str());
  if (logx) std::fprintf(gp, "set logscale x 2\n");
  std::fprintf(gp, "plot ");
  for (size_t i = 0; i < series.size(); ++i)
    std::fprintf(gp, "%s'-' using 1:2 with linespoints lw 2 title %s", i ? ", " : "", quoted(series[i].name).c_str());
  std::fprintf(gp, "\n");
  for (const auto& s : series) {
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) std::fprintf(gp, "%.9g %.9g\n", s.x[i], s.y[i]);
    std::fprintf(gp, "e\n");
  }
  const int rc = pclose(gp);
  if (rc != 0) std::fprintf(stderr, "warning: gnuplot failed writing %s\n", path.c_str());
  return rc == 0;
}

}  // namespace gka::cli
