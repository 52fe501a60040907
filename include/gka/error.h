// The one exception type libgka throws: its message names the argument, what was expected and what came.
#pragma once

#include <stdexcept>
#include <string>

namespace gka {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace gka
