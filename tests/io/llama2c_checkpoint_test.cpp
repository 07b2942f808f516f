// The checkpoint reader on good and on broken files: every defect is a
// model_format_error naming the file and the field, never a crash.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <unistd.h>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/io/llama2c_checkpoint.hpp"
#include "kvdecode/model/random_weights.hpp"
#include "support/temp_dir.hpp"
#include "support/test_data.hpp"

using namespace kvdecode;

namespace {

using kvtest::temp_dir;

std::vector<char> header(std::vector<std::int32_t> fields) {
    std::vector<char> bytes(fields.size() * 4);
    std::memcpy(bytes.data(), fields.data(), bytes.size());
    return bytes;
}

// A complete, valid checkpoint for a tiny shape (vocab negative: separate classifier).
std::vector<char> valid_file(std::int32_t vocab = -11) {
    const std::int32_t dim = 8, hidden = 12, layers = 2, heads = 2, kv = 1, seq = 6;
    auto bytes = header({dim, hidden, layers, heads, kv, vocab, seq});
    const std::int32_t hd = dim / heads, kvd = kv * hd, v = vocab < 0 ? -vocab : vocab;
    std::size_t floats = std::size_t(v) * dim + layers * dim + layers * dim * dim + 2 * layers * kvd * dim +
                         layers * dim * dim + layers * dim + 3 * layers * hidden * dim + dim + seq * hd;
    if (vocab < 0) floats += std::size_t(v) * dim;
    for (std::size_t i = 0; i < floats; ++i) {
        const float f = 0.01f * float(i % 97);
        const char* p = reinterpret_cast<const char*>(&f);
        bytes.insert(bytes.end(), p, p + 4);
    }
    return bytes;
}

std::filesystem::path write(const temp_dir& dir, const std::string& name, const std::vector<char>& bytes) {
    const auto p = dir.path / name;
    std::ofstream(p, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
    return p;
}

void expect_format_error(const std::filesystem::path& p, const std::string& field, const std::string& words,
                         const llama2c_limits& limits = {}) {
    try {
        read_llama2c_checkpoint<float>(p, limits);
        FAIL("no exception for " << p);
    } catch (const model_format_error& e) {
        CAPTURE(e.what());
        REQUIRE(e.file() == p.string());
        REQUIRE(e.field() == field);
        REQUIRE_THAT(e.what(), Catch::Contains(p.string()) && Catch::Contains(words));
    }
}

}  // namespace

TEST_CASE("a valid checkpoint loads with the fused layout", "[io]") {
    temp_dir dir;
    const auto w = read_llama2c_checkpoint<float>(write(dir, "ok.bin", valid_file()));
    const auto& c = w.config();
    REQUIRE(c.dim == 8);
    REQUIRE(c.vocab_size == 11);
    REQUIRE_FALSE(c.shared_classifier);
    REQUIRE(c.head_dim == 4);
    REQUIRE(c.rope == rope_layout::interleaved);
    // wq of layer 0 starts right after the embedding and the rms_att weights.
    const std::size_t wq0 = 11 * 8 + 2 * 8;
    REQUIRE(w.wq(0)[0] == 0.01f * float(wq0 % 97));
    REQUIRE(w.wqkv(0) == w.wq(0));
    REQUIRE(w.wk(0) == w.wq(0) + c.q_dim() * c.dim);  // k rows follow q rows in one matrix
    const auto shared = read_llama2c_checkpoint<double>(write(dir, "shared.bin", valid_file(11)));
    REQUIRE(shared.config().shared_classifier);
    REQUIRE(shared.classifier() == shared.token_embedding());
}

TEST_CASE("broken checkpoints throw model_format_error naming file and field", "[io][errors]") {
    temp_dir dir;
    auto good = valid_file();
    expect_format_error(write(dir, "empty.bin", {}), "header", "28 bytes");
    expect_format_error(write(dir, "short_header.bin", header({8, 12, 2})), "header", "found a file of 12 bytes");
    auto truncated = good;
    truncated.resize(truncated.size() - 5);
    expect_format_error(write(dir, "truncated.bin", truncated), "file size", "truncated");
    auto extra = good;
    extra.push_back(0);
    expect_format_error(write(dir, "extra.bin", extra), "file size", "extra data");
    expect_format_error(write(dir, "zero_dim.bin", header({0, 12, 2, 2, 1, 11, 6})), "dim", "found 0");
    expect_format_error(write(dir, "neg_layers.bin", header({8, 12, -2, 2, 1, 11, 6})), "n_layers", "found -2");
    expect_format_error(write(dir, "zero_vocab.bin", header({8, 12, 2, 2, 1, 0, 6})), "vocab_size", "found 0");
    expect_format_error(write(dir, "gqa.bin", header({12, 12, 2, 3, 2, 11, 6})), "n_heads", "multiple of n_kv_heads");
    expect_format_error(write(dir, "more_kv.bin", header({8, 12, 2, 2, 4, 11, 6})), "n_heads", "multiple of n_kv_heads");
    expect_format_error(write(dir, "heads.bin", header({10, 12, 2, 4, 2, 11, 6})), "dim", "multiple of n_heads");
    expect_format_error(write(dir, "odd_head.bin", header({6, 12, 2, 2, 1, 11, 6})), "dim", "even head dimension");
    // Past the limits a header fails on its first oversized field; with no limits, on the overflow.
    const auto overflow = write(dir, "overflow.bin", header({1 << 30, 1 << 30, 1 << 30, 1 << 29, 1 << 29, 1 << 30, 2}));
    expect_format_error(overflow, "dim", "llama2c_limits::max_dim");
    constexpr std::size_t any = SIZE_MAX;
    expect_format_error(overflow, "header", "overflow",
                        {.max_dim = any, .max_hidden_dim = any, .max_layers = any, .max_heads = any,
                         .max_vocab_size = any, .max_seq_len = any});
    // Llama 2 70B's shape is within the limits: only the file's size stops it.
    expect_format_error(write(dir, "huge.bin", header({8192, 28672, 80, 64, 8, 32000, 4096})), "file size", "truncated");
    expect_format_error(write(dir, "magic.bin", header({0x616b3432, 1, 2, 2, 1, 11, 6})), "magic", "ak42");
    expect_format_error(dir.path, "file", "a directory");
    expect_format_error(dir.path / "missing.bin", "file", "nothing at this path");
}

TEST_CASE("a checkpoint's shape must be within llama2c_limits, each limit named in the error", "[io][errors]") {
    temp_dir dir;
    // {dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len} with one field past its default limit.
    struct over {
        const char* field;
        const char* limit;
        std::size_t bound;
        std::vector<std::int32_t> fields;
    };
    const llama2c_limits d;  // the defaults
    auto past = [](std::size_t bound) { return static_cast<std::int32_t>(bound) + 1; };
    const std::vector<over> cases = {
        {"dim", "max_dim", d.max_dim, {past(d.max_dim), 12, 2, 2, 1, 11, 6}},
        {"hidden_dim", "max_hidden_dim", d.max_hidden_dim, {8, past(d.max_hidden_dim), 2, 2, 1, 11, 6}},
        {"n_layers", "max_layers", d.max_layers, {8, 12, past(d.max_layers), 2, 1, 11, 6}},
        {"n_heads", "max_heads", d.max_heads, {8, 12, 2, past(d.max_heads), 1, 11, 6}},
        {"n_kv_heads", "max_heads", d.max_heads, {8, 12, 2, 2, past(d.max_heads), 11, 6}},
        {"vocab_size", "max_vocab_size", d.max_vocab_size, {8, 12, 2, 2, 1, past(d.max_vocab_size), 6}},
        {"vocab_size", "max_vocab_size", d.max_vocab_size, {8, 12, 2, 2, 1, -past(d.max_vocab_size), 6}},
        {"seq_len", "max_seq_len", d.max_seq_len, {8, 12, 2, 2, 1, 11, past(d.max_seq_len)}},
        {"seq_len", "max_seq_len", d.max_seq_len, {8, 12, 2, 2, 1, 11, INT32_MAX}},
    };
    for (const auto& c : cases) {
        CAPTURE(c.field);
        // Only the header: the limit is checked before the file's size, so nothing is sized from it.
        const auto p = write(dir, "over.bin", header(c.fields));
        try {
            read_llama2c_checkpoint<float>(p);
            FAIL("no exception");
        } catch (const model_format_error& e) {
            CAPTURE(e.what());
            REQUIRE(e.field() == c.field);
            REQUIRE_THAT(e.what(), Catch::Contains("expected at most " + std::to_string(c.bound) +
                                                   " (kvdecode::llama2c_limits::" + c.limit + ")"));
        }
    }
}

TEST_CASE("a 240 KB checkpoint claiming seq_len 30000 loads only with the limit raised", "[io][errors]") {
    temp_dir dir;
    // dim 2, one head of head_dim 2: the legacy RoPE tables (seq_len * head_dim floats)
    // make the file the size its header asks for, so only the limit rejects it.
    const std::int32_t dim = 2, hidden = 2, layers = 1, heads = 1, kv = 1, vocab = 4, seq = 30000;
    auto bytes = header({dim, hidden, layers, heads, kv, vocab, seq});
    const std::size_t floats = vocab * dim + layers * dim + 4 * layers * dim * dim + layers * dim +
                               3 * layers * hidden * dim + dim + std::size_t(seq) * dim;
    bytes.resize(bytes.size() + 4 * floats);
    REQUIRE(bytes.size() == 240196);
    const auto p = write(dir, "long_context.bin", bytes);
    expect_format_error(p, "seq_len", "expected at most 16384 (kvdecode::llama2c_limits::max_seq_len), found 30000");
    const auto w = read_llama2c_checkpoint<float>(p, {.max_seq_len = 30000});
    REQUIRE(w.config().seq_len == 30000);
}

TEST_CASE("the shared checkpoints load with their documented shapes", "[io][shared]") {
    const auto stories = kvtest::shared_file("models/stories260K.bin");
    const auto aidreams = kvtest::shared_file("models/aidreams260K.bin");
    if (!stories || !aidreams) return;
    const auto s = read_llama2c_checkpoint<float>(*stories).config();
    REQUIRE((s.dim == 64 && s.hidden_dim == 172 && s.n_layers == 5 && s.n_heads == 8 && s.n_kv_heads == 4 &&
             s.vocab_size == 512 && s.seq_len == 512 && s.shared_classifier));
    const auto a = read_llama2c_checkpoint<float>(*aidreams).config();
    REQUIRE((a.dim == 64 && a.n_layers == 4 && a.n_heads == 4 && a.n_kv_heads == 4 && a.seq_len == 128));
}

namespace {

std::vector<std::byte> as_byte_vector(const std::vector<char>& chars) {
    const auto b = std::as_bytes(std::span(chars));
    return {b.begin(), b.end()};
}

// Every tensor of two weight sets, bit for bit.
template <class T>
bool identical(const transformer_weights<T>& a, const transformer_weights<T>& b) {
    const auto& c = a.config();
    if (c.dim != b.config().dim || c.hidden_dim != b.config().hidden_dim || c.n_layers != b.config().n_layers ||
        c.n_heads != b.config().n_heads || c.n_kv_heads != b.config().n_kv_heads ||
        c.vocab_size != b.config().vocab_size || c.seq_len != b.config().seq_len ||
        c.shared_classifier != b.config().shared_classifier || a.parameter_count() != b.parameter_count())
        return false;
    auto same = [](const T* x, const T* y, std::size_t n) { return std::memcmp(x, y, n * sizeof(T)) == 0; };
    bool ok = same(a.token_embedding(), b.token_embedding(), c.vocab_size * c.dim) &&
              same(a.rms_final(), b.rms_final(), c.dim) && same(a.classifier(), b.classifier(), c.vocab_size * c.dim);
    for (std::size_t l = 0; l < c.n_layers; ++l)
        ok = ok && same(a.rms_att(l), b.rms_att(l), c.dim) && same(a.wqkv(l), b.wqkv(l), c.qkv_dim() * c.dim) &&
             same(a.wo(l), b.wo(l), c.dim * c.q_dim()) && same(a.rms_ffn(l), b.rms_ffn(l), c.dim) &&
             same(a.w13(l), b.w13(l), 2 * c.hidden_dim * c.dim) && same(a.w2(l), b.w2(l), c.dim * c.hidden_dim);
    return ok;
}

}  // namespace

TEST_CASE("a checkpoint in memory reads as the same file does", "[io]") {
    temp_dir dir;
    for (std::int32_t vocab : {-11, 11}) {
        const auto file = valid_file(vocab);
        const auto bytes = as_byte_vector(file);
        const auto path = write(dir, "ok.bin", file);
        REQUIRE(identical(read_llama2c_checkpoint<float>(bytes), read_llama2c_checkpoint<float>(path)));
        REQUIRE(identical(read_llama2c_checkpoint<double>(bytes), read_llama2c_checkpoint<double>(path)));
    }
    const std::filesystem::path shipped = KVDECODE_MODELS_DIR "/kjv_llama.bin";
    const auto bytes = as_byte_vector([&] {
        const std::string text = kvtest::read_text(shipped);
        return std::vector<char>(text.begin(), text.end());
    }());
    REQUIRE(identical(read_llama2c_checkpoint<float>(bytes, "kjv"), read_llama2c_checkpoint<float>(shipped)));
}

TEST_CASE("a broken checkpoint in memory throws model_format_error naming the buffer", "[io][errors]") {
    auto expect = [](std::span<const std::byte> bytes, const std::string& name, const std::string& field,
                     const std::string& words) {
        try {
            if (name.empty())
                read_llama2c_checkpoint<float>(bytes);
            else
                read_llama2c_checkpoint<float>(bytes, name);
            FAIL("no exception");
        } catch (const model_format_error& e) {
            CAPTURE(e.what());
            REQUIRE(e.file() == (name.empty() ? "<memory>" : name));
            REQUIRE(e.field() == field);
            REQUIRE_THAT(e.what(), Catch::Contains(words));
        }
    };
    auto truncated = valid_file();
    truncated.pop_back();
    expect(as_byte_vector(truncated), "upload", "file size", "truncated");
    expect({}, "", "header", "28 bytes");
    expect(as_byte_vector(header({8, 12, 2, 2, 4, 11, 6})), "", "n_heads", "multiple of n_kv_heads");
}
