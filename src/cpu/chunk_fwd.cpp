#include "backends.h"
#include "gka/error.h"
namespace gka::cpu {
void chunk_forward(const Problem&, const ForwardOutputs&) { throw Error("cpu::chunk_forward: not implemented yet"); }
}  // namespace gka::cpu
