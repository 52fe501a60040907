#include "backends.h"
#include "gka/error.h"
namespace gka::cpu {
void recurrent_forward(const Problem&, const ForwardOutputs&) { throw Error("cpu::recurrent_forward: not implemented yet"); }
}  // namespace gka::cpu
