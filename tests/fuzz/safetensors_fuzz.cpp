// libFuzzer harness: the safetensors reader (safetensors_file::from_memory) on
// arbitrary bytes, then the Hugging Face model reader over what it read. A bad input
// must end in kvdecode::file_format_error naming the input; anything else that escapes
// is a crash. On success the tensors' places are checked independently of the reader
// (inside the data, tiling it exactly, sizes from shape and dtype) and every byte is
// read (AddressSanitizer sees a span outside the input); then the tensors are offered
// to the model reader as the weights of a small Llama, whose every check must also be
// a file_format_error.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "kvdecode/io/hf_model.hpp"
#include "kvdecode/io/safetensors.hpp"

using namespace kvdecode;

namespace {

const std::string input_name = "fuzz input";

std::optional<safetensors_file> read(std::span<const std::byte> bytes) {
    try {
        return safetensors_file::from_memory(bytes, input_name);
    } catch (const file_format_error& e) {
        KVFUZZ_CHECK(e.file() == input_name);
        KVFUZZ_CHECK(!e.field().empty());
        KVFUZZ_CHECK(std::string(e.what()).rfind("kvdecode: " + input_name + ": ", 0) == 0);
        return std::nullopt;
    }
}

unsigned touch_tensors(const safetensors_file& f, std::span<const std::byte> bytes) {
    KVFUZZ_CHECK(f.data_offset() >= 8 && f.data_offset() <= bytes.size());
    const std::byte* data = bytes.data() + f.data_offset();
    std::uint64_t expected_begin = 0;
    unsigned sum = 0;
    for (const auto& t : f.tensors()) {  // in data order
        KVFUZZ_CHECK(f.find(t.name) == &t);
        unsigned __int128 n = info(t.dtype).bytes;
        for (auto d : t.shape) n *= d;
        KVFUZZ_CHECK(n == t.data.size());
        KVFUZZ_CHECK(t.data.empty() || t.data.data() == data + expected_begin);
        expected_begin += t.data.size();
        for (std::byte b : t.data) sum += std::to_integer<unsigned>(b);
    }
    KVFUZZ_CHECK(f.data_offset() + expected_begin == bytes.size());
    return sum;
}

// The weights of this config, named as transformers names them, are what a seed
// (make_seeds.cpp) holds; mutations move, retype and reshape them.
hf_config small_llama() {
    return parse_hf_config(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 8, "intermediate_size": 12,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 6,
        "max_position_embeddings": 16, "tie_word_embeddings": true})");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const hf_config config = small_llama();
    const auto bytes = kvfuzz::bytes_of(data, size);
    auto f = read(bytes);
    if (!f) return 0;
    volatile unsigned sink = touch_tensors(*f, bytes);
    (void)sink;
    try {
        const stored_weights s = hf_stored_weights(config, hf_weight_files::from_files({*f}));
        KVFUZZ_CHECK(s.layers.size() == 1 && s.token_embedding.out_dim == 6 && s.token_embedding.in_dim == 8);
        const packed_weights<float> packed(s);
        (void)packed;
    } catch (const file_format_error& e) {
        KVFUZZ_CHECK(e.file() == input_name);
    }
    return 0;
}
