// `gka`: the command line of libgka on LibTorch. `gka train` trains small decoders with GKA, Gated DeltaNet,
// GLA or attention mixers on associative recall or byte-level text; `gka sweep` runs a grid; `gka generate`
// samples from a trained lm checkpoint; `gka study` runs the numerical studies (apps/gka/study).
#include <CLI/CLI.hpp>
#include <c10/util/Exception.h>

#include <cstdio>
#include <cstring>
#include <exception>

#include "commands.h"
#include "study/study.h"
#include "train.h"

int main(int argc, char** argv) {
  // `gka study ...` has its own flags: hand it the rest of the command line untouched.
  if (argc >= 2 && std::strcmp(argv[1], "study") == 0) return gka::cli::study_main(argc - 1, argv + 1);
  // CUDA kernels register when libtorch_cuda.so loads, which must happen before torch first asks for them.
  for (int i = 1; i < argc; ++i)
    if (std::strstr(argv[i], "cuda")) gka::cli::load_torch_cuda();
  CLI::App app{"gka: train and compare Gated KalmaNet against Gated DeltaNet, GLA and attention (LibTorch)"};
  app.require_subcommand(1);
  gka::cli::add_train_command(app);
  gka::cli::add_sweep_command(app);
  gka::cli::add_generate_command(app);
  app.add_subcommand("study", "numerical studies of the GKA solve (gka study --help)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "gka: error: %s\n", e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gka: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
