// The project's programs (tests, benchmarks, examples) are built with
// KVDECODE_SEPARATE_KERNELS: their kernels are compiled here, once.
#include "kvdecode/compiled_kernels.hpp"
