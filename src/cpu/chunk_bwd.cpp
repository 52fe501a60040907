#include "backends.h"
#include "gka/error.h"
namespace gka::cpu {
void chunk_backward(const Problem&, const BackwardInputs&, const Gradients&) { throw Error("cpu::chunk_backward: not implemented yet"); }
}  // namespace gka::cpu
