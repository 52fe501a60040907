// `gka study ...`: numerical studies of the GKA solve (issue 4). The `gka` command line dispatches here.
#pragma once

namespace gka::cli {

// argv[0] is "study"; returns the process exit code.
int study_main(int argc, char** argv);

}  // namespace gka::cli
