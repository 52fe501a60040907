#include "backends.h"
#include "gka/error.h"
namespace gka::reference {
void backward(const Problem&, const BackwardInputs&, const Gradients&) { throw Error("reference::backward: not implemented yet"); }
}  // namespace gka::reference
