#pragma once
// Heap allocations counted by replacing the global operator new (allocation_counter.cpp).
// Only programs that link that file may include this: it is their own executable.

#include <cstddef>

namespace kvtest {

// operator new calls (every form) since the program started.
std::size_t allocation_count() noexcept;
// Bytes of the largest operator new call since reset_largest_allocation (or the start).
std::size_t largest_allocation() noexcept;
void reset_largest_allocation() noexcept;

}  // namespace kvtest
