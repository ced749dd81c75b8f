// The calibration's random generator: std::mt19937_64 (its output sequence is fixed by the C++ standard, so a
// seed gives the same draws on every platform), with its full state saved as text in the resume file, and
// distribution helpers written out here (std::uniform_int_distribution is implementation-defined).
#pragma once
#include <cstdint>
#include <random>
#include <sstream>
#include <string>

#include "mambaextend/error.h"

namespace mx::calib {

using Rng = std::mt19937_64;

inline std::string rng_state(const Rng& r) {
  std::ostringstream o;
  o << r;
  return o.str();
}

inline Rng rng_from_state(const std::string& s) {
  Rng r;
  std::istringstream in(s);
  in >> r;
  if (in.fail()) throw ConfigError("calibration state: the saved random generator state is corrupt");
  return r;
}

// Uniform integer in [0, n), n >= 1, by rejection (no modulo bias).
inline uint64_t uniform_below(Rng& r, uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do x = r(); while (x >= limit);
  return x % n;
}

// Rademacher ±1 from the top bit of one draw.
inline double rademacher(Rng& r) { return (r() >> 63) ? 1.0 : -1.0; }

}  // namespace mx::calib
