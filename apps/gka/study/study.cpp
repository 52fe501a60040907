#include "study/study.h"

#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "study/numerics.h"
#include "study/plot.h"

namespace gka::cli {
namespace {

void usage() {
  std::fprintf(stderr,
               "usage: gka study numerics [--quick | --smoke] [--out DIR] [--threads N]\n"
               "  Reproduces the paper's numerical-stability claims (issue 4): Chebyshev vs CG vs the classic\n"
               "  Kalman recursion vs exact solves; adaptive vs fixed lambda; fp64 / fp32 / simulated bf16;\n"
               "  gradients through a 5-layer stack. Writes DIR/numerics.md, DIR/numerics/*.png and *.csv\n"
               "  (DIR defaults to docs/results).\n"
               "  --quick   small sizes (a few minutes on 2 cores)   --smoke  tiny sizes (seconds, for tests)\n"
               "  default   the full study (T up to 65,536; tens of minutes)\n");
}

}  // namespace

int study_main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) != "numerics") {
    usage();
    return 2;
  }
  study::Scale scale = study::Scale::full;
  std::string out = "docs/results";
  int threads = omp_get_max_threads();
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") scale = study::Scale::quick;
    else if (a == "--smoke") scale = study::Scale::smoke;
    else if (a == "--out" && i + 1 < argc) out = argv[++i];
    else if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else {
      usage();
      return 2;
    }
  }
  if (!study::png_available())
    std::fprintf(stderr, "gka study: built without libpng, the report will have no plots "
                         "(install libpng-dev, e.g. `apt-get install libpng-dev`, and rebuild)\n");
  try {
    const study::NumericsData data = study::numerics_collect(scale, threads > 0 ? threads : 1);
    study::numerics_report(data, out);
    std::fprintf(stderr, "gka study numerics: wrote %s/numerics.md (%.1f s)\n", out.c_str(), data.seconds);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gka study numerics: %s\n", e.what());
    return 1;
  }
  return 0;
}

}  // namespace gka::cli
