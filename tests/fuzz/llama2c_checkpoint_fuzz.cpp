// libFuzzer harness: the llama2.c checkpoint reader on arbitrary bytes.
// A bad input must end in kvdecode::model_format_error naming the input; anything
// else that escapes is a crash. On success the weights must be exactly what the
// header says: its dimensions (within llama2c_limits), a file of exactly the size
// they imply, and every tensor equal to the bytes at the offset an independent walk
// of the layout finds.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>

#include "fuzz_support.hpp"
#include "kvdecode/io/llama2c_checkpoint.hpp"

using namespace kvdecode;

namespace {

const std::string input_name = "fuzz input";

// The header's seven fields, read by the harness itself.
struct header {
    std::int64_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab, seq_len;
};

header header_of(std::span<const std::byte> bytes) {
    auto field = [&](std::size_t i) { return std::int64_t{kvfuzz::int32_at(bytes, 4 * i)}; };
    return {field(0), field(1), field(2), field(3), field(4), field(5), field(6)};
}

// Walks the file in llama2.c's tensor order, comparing each tensor with the bytes
// where it must have come from; returns the offset after the last tensor.
template <class T>
std::size_t check_tensors(const transformer_weights<T>& w, std::span<const std::byte> bytes) {
    const model_config& c = w.config();
    std::size_t offset = 7 * sizeof(std::int32_t);
    auto expect = [&](const T* got, std::size_t count) {
        KVFUZZ_CHECK(offset + count * sizeof(float) <= bytes.size());
        for (std::size_t i = 0; i < count; ++i) {
            float f;
            std::memcpy(&f, bytes.data() + offset + i * sizeof f, sizeof f);
            const T want = static_cast<T>(f);  // bitwise: NaNs must come through as NaNs
            KVFUZZ_CHECK(std::memcmp(&want, got + i, sizeof want) == 0);
        }
        offset += count * sizeof(float);
    };
    const std::size_t dim = c.dim, hidden = c.hidden_dim, q_dim = c.q_dim(), kv_dim = c.kv_dim();
    expect(w.token_embedding(), c.vocab_size * dim);
    for (std::size_t l = 0; l < c.n_layers; ++l) expect(w.rms_att(l), dim);
    for (std::size_t l = 0; l < c.n_layers; ++l) expect(w.wq(l), q_dim * dim);
    for (std::size_t l = 0; l < c.n_layers; ++l) expect(w.wk(l), kv_dim * dim);
    for (std::size_t l = 0; l < c.n_layers; ++l) expect(w.wv(l), kv_dim * dim);
    for (std::size_t l = 0; l < c.n_layers; ++l) expect(w.wo(l), dim * q_dim);
    for (std::size_t l = 0; l < c.n_layers; ++l) expect(w.rms_ffn(l), dim);
    for (std::size_t l = 0; l < c.n_layers; ++l) expect(w.w1(l), hidden * dim);
    for (std::size_t l = 0; l < c.n_layers; ++l) expect(w.w2(l), dim * hidden);
    for (std::size_t l = 0; l < c.n_layers; ++l) expect(w.w3(l), hidden * dim);
    expect(w.rms_final(), dim);
    offset += c.seq_len * c.head_dim * sizeof(float);  // the legacy freq_cis tables, unused
    if (c.shared_classifier)
        KVFUZZ_CHECK(w.classifier() == w.token_embedding());
    else
        expect(w.classifier(), c.vocab_size * dim);
    return offset;
}

template <class T>
std::optional<transformer_weights<T>> read(std::span<const std::byte> bytes) {
    try {
        return read_llama2c_checkpoint<T>(bytes, input_name);
    } catch (const model_format_error& e) {
        KVFUZZ_CHECK(e.file() == input_name);
        KVFUZZ_CHECK(!e.field().empty());
        KVFUZZ_CHECK(std::string(e.what()).find(input_name) != std::string::npos);
        return std::nullopt;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto bytes = kvfuzz::bytes_of(data, size);
    const auto w = read<float>(bytes);
    if (!w) return 0;

    // The config is the header's, and a valid one.
    const model_config& c = w->config();
    KVFUZZ_CHECK(size >= 7 * sizeof(std::int32_t));
    const header h = header_of(bytes);
    KVFUZZ_CHECK(h.dim > 0 && h.hidden_dim > 0 && h.n_layers > 0 && h.n_heads > 0 && h.n_kv_heads > 0 &&
                 h.vocab != 0 && h.seq_len > 0);
    KVFUZZ_CHECK(c.dim == std::uint64_t(h.dim) && c.hidden_dim == std::uint64_t(h.hidden_dim));
    KVFUZZ_CHECK(c.n_layers == std::uint64_t(h.n_layers) && c.seq_len == std::uint64_t(h.seq_len));
    KVFUZZ_CHECK(c.n_heads == std::uint64_t(h.n_heads) && c.n_kv_heads == std::uint64_t(h.n_kv_heads));
    KVFUZZ_CHECK(c.vocab_size == std::uint64_t(h.vocab > 0 ? h.vocab : -h.vocab));
    KVFUZZ_CHECK(c.shared_classifier == (h.vocab > 0));
    KVFUZZ_CHECK(c.head_dim * c.n_heads == c.dim && c.head_dim % 2 == 0 && c.n_heads % c.n_kv_heads == 0);
    const model_config again = validated(c);
    KVFUZZ_CHECK(again.head_dim == c.head_dim);
    const llama2c_limits limits;  // the defaults the read used
    KVFUZZ_CHECK(c.dim <= limits.max_dim && c.hidden_dim <= limits.max_hidden_dim && c.n_layers <= limits.max_layers &&
                 c.n_heads <= limits.max_heads && c.vocab_size <= limits.max_vocab_size &&
                 c.seq_len <= limits.max_seq_len);

    // The file's size is exactly what the dimensions imply (in 128 bits: no overflow to hide behind).
    using u128 = unsigned __int128;
    const u128 dim = c.dim, hidden = c.hidden_dim, layers = c.n_layers, kv_dim = c.kv_dim(), vocab = c.vocab_size;
    const u128 per_layer = 2 * dim + 2 * dim * dim + 2 * kv_dim * dim + 3 * hidden * dim;
    const u128 weights = vocab * dim * (c.shared_classifier ? 1 : 2) + layers * per_layer + dim;
    const u128 floats = weights + u128{c.seq_len} * c.head_dim;
    KVFUZZ_CHECK(u128{size} == 7 * sizeof(std::int32_t) + floats * sizeof(float));
    KVFUZZ_CHECK(u128{w->parameter_count()} == weights);

    // Every tensor holds the bytes at its place in the file, and they account for all of it.
    KVFUZZ_CHECK(check_tensors(*w, bytes) == size);

    // The float64 reader accepts the same file and widens the same values.
    const auto wide = read<double>(bytes);
    KVFUZZ_CHECK(wide.has_value());
    KVFUZZ_CHECK(wide->parameter_count() == w->parameter_count());
    KVFUZZ_CHECK(check_tensors(*wide, bytes) == size);
    return 0;
}
