#pragma once
// kvdecode: autoregressive decoding with transformer language models on the CPU.
// The umbrella header; every header below also compiles on its own.

#include "kvdecode/cache/block_pool.hpp"
#include "kvdecode/cache/kv_cache.hpp"
#include "kvdecode/cache/mask_cache.hpp"
#include "kvdecode/core/aligned_buffer.hpp"
#include "kvdecode/core/error.hpp"
#include "kvdecode/core/rng.hpp"
#include "kvdecode/io/llama2c_checkpoint.hpp"
#include "kvdecode/io/llama2c_tokenizer.hpp"
#include "kvdecode/model/batch.hpp"
#include "kvdecode/model/config.hpp"
#include "kvdecode/model/language_model.hpp"
#include "kvdecode/model/random_weights.hpp"
#include "kvdecode/model/reference_model.hpp"
#include "kvdecode/model/transformer.hpp"
#include "kvdecode/model/weights.hpp"
#include "kvdecode/decode/generate.hpp"
#include "kvdecode/decode/options.hpp"
#include "kvdecode/decode/result.hpp"
#include "kvdecode/sampling/processors.hpp"
#include "kvdecode/sampling/sampler.hpp"
