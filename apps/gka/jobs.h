// Child processes for `gka sweep --jobs N`: run command lines, at most N at a time, each with its output in
// a log file, and report each one as it ends.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace gka::cli {

struct ChildJob {
  std::vector<std::string> argv;  // argv[0] is the program
  std::string log;                // stdout and stderr go here (truncated)
};

// Exit codes of run_jobs besides the jobs' own: could not start, not started before the time limit.
constexpr int kJobSpawnFailed = -1, kJobNotStarted = -2;

// Starts jobs in the order of `order` (indices into jobs), keeping at most `parallel` running; on_done(index,
// exit code) runs in this process as each ends, in completion order (128 + n: killed by signal n). With
// time_limit_s > 0, no job starts after that many seconds and the running ones get SIGTERM then. Returns the
// exit codes by index (kJobNotStarted for the jobs never started; on_done is not called for those).
std::vector<int> run_jobs(const std::vector<ChildJob>& jobs, const std::vector<size_t>& order, int parallel,
                          double time_limit_s, const std::function<void(size_t, int)>& on_done);

// The path of the running executable (/proc/self/exe).
std::string self_exe();

// The last `lines` lines of a text file ("" when unreadable).
std::string tail_lines(const std::string& path, int lines);

}  // namespace gka::cli
