// gka-study: runs `gka study ...` without the full gka command line.
#include <string>
#include <vector>

#include "study/study.h"

int main(int argc, char** argv) {
  std::vector<std::string> args{"study"};
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  std::vector<char*> ptrs;
  for (std::string& a : args) ptrs.push_back(a.data());
  return gka::cli::study_main(static_cast<int>(ptrs.size()), ptrs.data());
}
