#include "progress.h"

#include <unistd.h>

#include <cstdio>

namespace gka::cli {

std::string format_duration(double s) {
  char buf[32];
  const int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(t / 3600),
                  static_cast<long long>(t / 60 % 60), static_cast<long long>(t % 60));
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(t / 60), static_cast<long long>(t % 60));
  return buf;
}

Progress::Progress(std::string label, int64_t total, int64_t start)
    : label_(std::move(label)), total_(total), start_(start), tty_(isatty(STDERR_FILENO) != 0),
      t0_(std::chrono::steady_clock::now()), last_draw_(t0_) {}

double Progress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

void Progress::update(int64_t done, const std::string& fields) {
  const auto now = std::chrono::steady_clock::now();
  if (tty_) {
    if (std::chrono::duration<double>(now - last_draw_).count() < 0.2 && done < total_) return;
    last_draw_ = now;
    draw(done, fields, false);
  } else {
    const int64_t decile = total_ > 0 ? done * 10 / total_ : 10;
    if (decile == last_decile_) return;
    last_decile_ = decile;
    draw(done, fields, false);
  }
}

void Progress::finish(const std::string& fields) { draw(total_, fields, true); }

void Progress::draw(int64_t done, const std::string& fields, bool final) {
  const double el = elapsed_s();
  const double rate = (done - start_) > 0 ? (done - start_) / el : 0.0;
  const double eta = rate > 0 ? (total_ - done) / rate : 0.0;
  constexpr int kWidth = 24;
  const int filled = total_ > 0 ? static_cast<int>(kWidth * done / total_) : kWidth;
  std::string bar(filled, '#');
  bar.append(kWidth - filled, '.');
  std::fprintf(stderr, "%s%-16s [%s] %3d%% %lld/%lld %5.1f it/s %s %s %s%s", tty_ ? "\r\033[2K" : "", label_.c_str(),
               bar.c_str(), total_ > 0 ? static_cast<int>(100 * done / total_) : 100, static_cast<long long>(done),
               static_cast<long long>(total_), rate, final ? "took" : "ETA",
               format_duration(final ? el : eta).c_str(), fields.c_str(), (final || !tty_) ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace gka::cli
