#include "study/study.h"

#include <cstdio>

namespace gka::cli {

int study_main(int, char**) {
  std::fprintf(stderr, "gka study: not implemented yet\n");
  return 2;
}

}  // namespace gka::cli
