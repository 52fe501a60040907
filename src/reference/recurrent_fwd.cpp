#include "backends.h"
#include "gka/error.h"
namespace gka::reference {
void forward(const Problem&, const ForwardOutputs&) { throw Error("reference::forward: not implemented yet"); }
}  // namespace gka::reference
