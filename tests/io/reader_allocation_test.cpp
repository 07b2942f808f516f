// The readers size nothing from a file's claims before checking them against the
// file: crafted files that claim gigabytes fail with at most a few small
// allocations. The largest single allocation is recorded by the replaced global
// operator new (support/allocation_counter.cpp; this is a program of its own).

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "support/gguf_bytes.hpp"

#include "kvdecode/io/gguf.hpp"
#include "kvdecode/io/llama2c_checkpoint.hpp"
#include "kvdecode/io/llama2c_tokenizer.hpp"
#include "support/allocation_counter.hpp"

using namespace kvdecode;

namespace {

// More than a stream buffer and an error message, far less than any claim below.
constexpr std::size_t small = 64 * 1024;

std::string int32(std::int32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }

struct crafted_file {
    std::filesystem::path path;
    explicit crafted_file(const std::string& bytes)
        : path(std::filesystem::temp_directory_path() / ("kvdecode_alloc_" + std::to_string(::getpid()) + ".bin")) {
        std::ofstream(path, std::ios::binary) << bytes;
    }
    ~crafted_file() { std::filesystem::remove(path); }
};

// The largest allocation made while `read` fails with a model_format_error.
template <class F>
std::size_t largest_allocation_of_failing(F read) {
    kvtest::reset_largest_allocation();
    REQUIRE_THROWS_AS(read(), model_format_error);
    return kvtest::largest_allocation();
}

}  // namespace

TEST_CASE("a 15-byte tokenizer claiming a 2 GiB piece allocates nothing large", "[io][tokenizer][allocation]") {
    const crafted_file f(int32(INT32_MAX) + std::string(4, '\0') + int32(INT32_MAX) + "abc");
    CHECK(largest_allocation_of_failing([&] { return tokenizer::read_llama2c(f.path); }) < small);
    // A vocabulary far beyond what the file can hold reserves nothing either.
    const crafted_file g(int32(8) + std::string(4, '\0') + int32(3) + "abc");
    CHECK(largest_allocation_of_failing([&] { return tokenizer::read_llama2c(g.path, std::size_t{1} << 40); }) < small);
}

TEST_CASE("checkpoint headers claiming huge models allocate nothing large", "[io][allocation]") {
    auto header = [](std::initializer_list<std::int32_t> fields) {
        std::string out;
        for (std::int32_t v : fields) out += int32(v);
        return out;
    };
    // Within the limits (Llama 2 70B's shape), but 28 bytes long: the size check comes first.
    const crafted_file within(header({8192, 28672, 80, 64, 8, 32000, 4096}));
    CHECK(largest_allocation_of_failing([&] { return read_llama2c_checkpoint<float>(within.path); }) < small);
    // Past a limit: stopped at the header.
    const crafted_file past(header({64, 172, 5, 8, 4, 512, INT32_MAX}));
    CHECK(largest_allocation_of_failing([&] { return read_llama2c_checkpoint<float>(past.path); }) < small);
}

TEST_CASE("GGUF files claiming huge counts and lengths allocate nothing large", "[io][gguf][allocation]") {
    using kvtest::gguf_bytes;
    using kvtest::kv;
    auto rejected = [](const std::vector<std::byte>& bytes) {
        const crafted_file f(std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
        const std::size_t via_file = largest_allocation_of_failing([&] { return gguf_file::open(f.path); });
        const std::size_t via_memory = largest_allocation_of_failing([&] { return gguf_file::from_memory(bytes); });
        return std::max(via_file, via_memory);
    };
    auto with_kv = [](std::vector<std::byte> pair) {
        auto g = kvtest::small_gguf();
        g.kvs.insert(g.kvs.begin(), std::move(pair));
        return g.build();
    };
    auto g = kvtest::small_gguf();
    g.n_tensors = std::uint64_t{1} << 40;
    CHECK(rejected(g.build()) < small);
    g = kvtest::small_gguf();
    g.n_kv = std::uint64_t{1} << 40;
    CHECK(rejected(g.build()) < small);
    CHECK(rejected(with_kv(kv("s", 8, gguf_bytes().u64(std::uint64_t{1} << 60)))) < small);
    CHECK(rejected(with_kv(kv("a", 9, gguf_bytes().u32(0).u64(std::uint64_t{1} << 50)))) < small);
    CHECK(rejected(with_kv(kv("a", 9, gguf_bytes().u32(12).u64(std::uint64_t{1} << 50)))) < small);
    CHECK(rejected(with_kv(kv("a", 9, gguf_bytes().u32(8).u64(std::uint64_t{1} << 50)))) < small);
    // A key or tensor name of 2^60 bytes.
    gguf_bytes long_key;
    long_key.u64(std::uint64_t{1} << 60).zeros(16);
    CHECK(rejected(with_kv(long_key.bytes())) < small);
    g = kvtest::small_gguf();
    g.tensors[0].dims = {std::uint64_t{1} << 40, std::uint64_t{1} << 20};  // 2^60 floats, offsets fine
    CHECK(rejected(g.build()) < small);
}
