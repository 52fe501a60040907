// gka-quickstart: the first program to run. Checks the CPU backend against the fp64 reference on small
// layer-like problems, then times the CPU backend at one realistic shape. Exit status 1 if a check fails.
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "accuracy.h"
#include "gka/gka.h"
#include "timing.h"

namespace {

void usage(std::FILE* f) {
  std::fprintf(f,
               "usage: gka-quickstart [--threads N] [--quick] [--help]\n"
               "  (a) accuracy of the cpu backend vs the fp64 reference (fp32 and bf16 inputs, T not a\n"
               "      multiple of the chunk, varlen, initial states; outputs, final states and gradients)\n"
               "  (b) timing of forward, forward+backward and a decode step on the cpu backend\n"
               "  --threads N  CPU threads (default: OpenMP default)\n"
               "  --quick      fewer cases and a shorter timing\n"
               "exit status: 0 all checks pass, 1 a check failed, 2 bad arguments, 3 libgka error\n");
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  int threads = 0;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    } else if (!std::strcmp(argv[i], "--quick")) {
      quick = true;
    } else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) {
      char* end = nullptr;
      const long n = std::strtol(argv[++i], &end, 10);
      if (*end != '\0' || n < 1 || n > 4096) {
        std::fprintf(stderr, "gka-quickstart: --threads needs a positive integer, got '%s'\n", argv[i]);
        return 2;
      }
      threads = static_cast<int>(n);
    } else {
      std::fprintf(stderr, "gka-quickstart: unknown argument '%s'\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  std::printf("gka-quickstart: %d thread(s)%s\n\n", threads > 0 ? threads : omp_get_max_threads(),
              quick ? ", quick" : "");
  try {
    const bool ok = gka::quickstart::accuracy_check(quick, threads);
    gka::quickstart::timing_run(quick, threads);
    std::printf("\n%s\n", ok ? "all accuracy checks passed" : "SOME ACCURACY CHECKS FAILED");
    return ok ? 0 : 1;
  } catch (const gka::Error& e) {
    std::fprintf(stderr, "gka-quickstart: libgka error: %s\n", e.what());
    return 3;
  }
}
