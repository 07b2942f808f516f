#pragma once
// GGUF files assembled byte by byte for the reader's tests, independently of
// kvdecode's gguf_writer: each field is written where the format puts it, so a test
// can break any one of them (a count, a length, a type id, an offset).

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace kvtest {

class gguf_bytes {
public:
    template <class T>
    gguf_bytes& put(T v) {
        const auto* p = reinterpret_cast<const std::byte*>(&v);
        out_.insert(out_.end(), p, p + sizeof v);  // little-endian, as the format
        return *this;
    }
    gguf_bytes& u32(std::uint32_t v) { return put(v); }
    gguf_bytes& u64(std::uint64_t v) { return put(v); }
    gguf_bytes& raw(std::string_view s) {
        for (char c : s) out_.push_back(static_cast<std::byte>(c));
        return *this;
    }
    gguf_bytes& append(std::span<const std::byte> b) {
        out_.insert(out_.end(), b.begin(), b.end());
        return *this;
    }
    gguf_bytes& str(std::string_view s) { return u64(s.size()).raw(s); }  // GGUF string: uint64 length, bytes
    gguf_bytes& zeros(std::size_t n) {
        out_.insert(out_.end(), n, std::byte{0});
        return *this;
    }
    std::size_t size() const { return out_.size(); }
    const std::vector<std::byte>& bytes() const { return out_; }

private:
    std::vector<std::byte> out_;
};

// One metadata pair: key, value type id, then the value's bytes as given.
inline std::vector<std::byte> kv(std::string_view key, std::uint32_t type, const gguf_bytes& value) {
    gguf_bytes b;
    b.str(key).u32(type).append(value.bytes());
    return b.bytes();
}
inline std::vector<std::byte> kv_u32(std::string_view key, std::uint32_t v) { return kv(key, 4, gguf_bytes().u32(v)); }
inline std::vector<std::byte> kv_string(std::string_view key, std::string_view v) {
    return kv(key, 8, gguf_bytes().str(v));
}

struct raw_tensor {
    std::string name;
    std::vector<std::uint64_t> dims;
    std::uint32_t type = 0;  // ggml type id
    std::uint64_t offset = 0;
};

// A whole file. Counts default to the lists' sizes; the data section (data_bytes of a
// byte pattern) starts at the next multiple of `pad_to` after the tensor infos.
struct raw_gguf {
    std::string magic = "GGUF";
    std::uint32_t version = 3;
    std::optional<std::uint64_t> n_tensors, n_kv;
    std::vector<std::vector<std::byte>> kvs;
    std::vector<raw_tensor> tensors;
    std::uint64_t pad_to = 32;
    std::uint64_t data_bytes = 0;

    std::vector<std::byte> build() const {
        gguf_bytes b;
        b.raw(magic).u32(version).u64(n_tensors.value_or(tensors.size())).u64(n_kv.value_or(kvs.size()));
        for (const auto& pair : kvs) b.append(pair);
        for (const auto& t : tensors) {
            b.str(t.name).u32(static_cast<std::uint32_t>(t.dims.size()));
            for (auto d : t.dims) b.u64(d);
            b.u32(t.type).u64(t.offset);
        }
        b.zeros((pad_to - b.size() % pad_to) % pad_to);
        for (std::uint64_t i = 0; i < data_bytes; ++i) b.put(static_cast<std::uint8_t>(i * 7 + 1));
        return b.bytes();
    }
};

// A small valid file: metadata of several types, an F32 matrix [4, 2] at 0 (32 bytes)
// and a Q8_0 row [32] at 32 (34 bytes), ending exactly where the last tensor ends (no
// trailing padding), so every shorter prefix of it is a truncated file.
inline raw_gguf small_gguf() {
    raw_gguf g;
    g.kvs = {kv_string("general.architecture", "llama"), kv_u32("llama.context_length", 256),
             kv("general.flag", 7, gguf_bytes().put(std::uint8_t{1})),
             kv("some.float", 6, gguf_bytes().put(0.5f)),
             kv("tokenizer.ggml.tokens", 9, gguf_bytes().u32(8).u64(2).str("<s>").str("a")),
             kv("tokenizer.ggml.scores", 9, gguf_bytes().u32(6).u64(2).put(0.0f).put(-1.5f))};
    g.tensors = {{"a.weight", {4, 2}, 0, 0}, {"b.weight", {32}, 8, 32}};
    g.data_bytes = 32 + 34;
    return g;
}

}  // namespace kvtest
