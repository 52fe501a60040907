#include "jobs.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

extern char** environ;

namespace gka::cli {

namespace {

// posix_spawn of job.argv with stdin from /dev/null and stdout + stderr into job.log; -1 when it fails.
pid_t spawn(const ChildJob& job) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, job.log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  std::vector<char*> argv;
  for (const auto& a : job.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : -1;
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

std::vector<int> run_jobs(const std::vector<ChildJob>& jobs, const std::vector<size_t>& order, int parallel,
                          double time_limit_s, const std::function<void(size_t, int)>& on_done) {
  std::vector<int> codes(jobs.size(), kJobNotStarted);
  std::map<pid_t, size_t> running;
  const auto t0 = std::chrono::steady_clock::now();
  auto expired = [&] {
    return time_limit_s > 0 && std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > time_limit_s;
  };
  size_t next = 0;
  bool stopped = false;
  while ((next < order.size() && !stopped) || !running.empty()) {
    if (!stopped && expired()) {
      stopped = true;
      for (const auto& [pid, index] : running) kill(pid, SIGTERM);
    }
    while (!stopped && next < order.size() && static_cast<int>(running.size()) < std::max(1, parallel)) {
      const size_t index = order[next++];
      const pid_t pid = spawn(jobs[index]);
      if (pid < 0) {
        codes[index] = kJobSpawnFailed;
        on_done(index, kJobSpawnFailed);
      } else {
        running[pid] = index;
      }
    }
    if (running.empty()) continue;
    int status = 0;
    const pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid == 0 || (pid < 0 && errno == EINTR)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    if (pid < 0) break;  // no children left (should not happen)
    auto it = running.find(pid);
    if (it == running.end()) continue;
    const size_t index = it->second;
    running.erase(it);
    codes[index] = exit_code(status);
    on_done(index, codes[index]);
  }
  return codes;
}

std::string self_exe() {
  std::error_code ec;
  const auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : p.string();
}

std::string tail_lines(const std::string& path, int lines) {
  std::ifstream in(path);
  std::deque<std::string> last;
  std::string line;
  while (std::getline(in, line)) {
    last.push_back(line);
    if (static_cast<int>(last.size()) > lines) last.pop_front();
  }
  std::string out;
  for (const auto& l : last) out += l + "\n";
  return out;
}

}  // namespace gka::cli
