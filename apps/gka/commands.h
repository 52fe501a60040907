// The `gka` subcommands; each registers its flags on a CLI11 subcommand and runs from its callback.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "config.h"

namespace gka::cli {

// Flags of the model, the task and the optimizer, bound to `c` (shared by train and sweep).
void add_config_flags(CLI::App* app, TrainConfig& c);

void add_train_command(CLI::App& app);
void add_sweep_command(CLI::App& app);
void add_generate_command(CLI::App& app);

}  // namespace gka::cli
