// A one-line progress bar on stderr with rate, ETA and live fields; on a non-terminal it prints a line every
// 10 % instead of redrawing.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace gka::cli {

class Progress {
 public:
  Progress(std::string label, int64_t total, int64_t start = 0);
  void update(int64_t done, const std::string& fields);
  void finish(const std::string& fields);
  double elapsed_s() const;

 private:
  void draw(int64_t done, const std::string& fields, bool final);
  std::string label_;
  int64_t total_, start_, last_decile_ = -1;
  bool tty_;
  std::chrono::steady_clock::time_point t0_, last_draw_;
};

std::string format_duration(double seconds);

}  // namespace gka::cli
