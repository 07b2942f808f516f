// libFuzzer harness: config.json and generation_config.json (parse_hf_config,
// parse_hf_generation_config) on arbitrary text. A bad input must end in
// kvdecode::file_format_error naming the input; anything else that escapes (one of
// nlohmann's exceptions, std::invalid_argument from validation) is a crash. On success
// the config must be one validated() accepts unchanged, with ids inside the vocabulary.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_support.hpp"
#include "kvdecode/io/hf_config.hpp"

using namespace kvdecode;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    try {
        const hf_config h = parse_hf_config(text, "fuzz input");
        const model_config& c = h.model;
        KVFUZZ_CHECK(validated(c).head_dim == c.head_dim);
        KVFUZZ_CHECK(c.rope == rope_layout::rotate_half);
        for (token_id e : h.eos) KVFUZZ_CHECK(e >= 0 && static_cast<std::size_t>(e) < c.vocab_size);
        KVFUZZ_CHECK(!h.bos || static_cast<std::size_t>(*h.bos) < c.vocab_size);
        KVFUZZ_CHECK(c.rope_freq_factors.empty() || c.rope_freq_factors.size() == c.head_dim / 2);
    } catch (const file_format_error& e) {
        KVFUZZ_CHECK(e.file() == "fuzz input");
    }
    try {
        const hf_generation_config g = parse_hf_generation_config(text, 100, "fuzz input");
        for (token_id e : g.eos) KVFUZZ_CHECK(e >= 0 && e < 100);
    } catch (const file_format_error& e) {
        KVFUZZ_CHECK(e.file() == "fuzz input");
    }
    return 0;
}
