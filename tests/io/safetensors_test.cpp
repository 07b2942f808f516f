// The safetensors reader (io/safetensors.hpp): files built here byte by byte, valid
// ones read back exactly, and every rule of the format broken once, each an error
// naming the problem.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/io/safetensors.hpp"
#include "support/temp_dir.hpp"

using namespace kvdecode;
using Catch::Matchers::Contains;

namespace {

// An 8-byte length, the header text, then `data`.
std::vector<std::byte> file_of(const std::string& header, const std::vector<std::uint8_t>& data) {
    std::vector<std::byte> out(8 + header.size() + data.size());
    std::uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = std::byte((n >> (8 * i)) & 0xFF);
    std::memcpy(out.data() + 8, header.data(), header.size());
    if (!data.empty()) std::memcpy(out.data() + 8 + header.size(), data.data(), data.size());
    return out;
}

std::vector<std::uint8_t> bytes(std::size_t n) {
    std::vector<std::uint8_t> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>(i * 7 + 1);
    return v;
}

safetensors_file read(const std::vector<std::byte>& file) { return safetensors_file::from_memory(file, "t.safetensors"); }

}  // namespace

TEST_CASE("a safetensors file reads back its tensors, shapes, bytes and metadata", "[io][safetensors]") {
    // Header of odd length: the data is not aligned, which the reader allows.
    const std::string header =
        R"({"__metadata__":{"format":"pt"},"b":{"dtype":"BF16","shape":[3],"data_offsets":[24,30]},)"
        R"("a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"e":{"dtype":"I64","shape":[0],"data_offsets":[30,30]}} )";
    const auto data = bytes(30);
    const auto file = file_of(header, data);
    const safetensors_file f = read(file);
    REQUIRE(f.data_offset() == 8 + header.size());
    REQUIRE(f.metadata().at("format") == "pt");
    REQUIRE(f.tensors().size() == 3);
    REQUIRE(f.tensors()[0].name == "a");  // data order
    REQUIRE(f.tensors()[1].name == "b");
    const safetensors_tensor& a = f.tensor("a");
    REQUIRE(a.dtype == safetensors_dtype::f32);
    REQUIRE(a.shape == std::vector<std::uint64_t>{2, 3});
    REQUIRE(a.elements() == 6);
    REQUIRE(a.data.size() == 24);
    REQUIRE(a.data.data() == file.data() + 8 + header.size());
    REQUIRE(std::memcmp(f.tensor("b").data.data(), data.data() + 24, 6) == 0);
    REQUIRE(f.tensor("e").data.empty());
    REQUIRE(f.find("c") == nullptr);
    REQUIRE_THROWS_WITH(f.tensor("c"), Contains("t.safetensors: tensor 'c': is missing"));
    REQUIRE(to_string(f.tensor("b").dtype) == "BF16");
}

TEST_CASE("a safetensors file on disk is mapped, and a missing one is named", "[io][safetensors]") {
    kvtest::temp_dir dir;
    const auto file = file_of(R"({"x":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", bytes(4));
    {
        std::ofstream out(dir.path / "m.safetensors", std::ios::binary);
        out.write(reinterpret_cast<const char*>(file.data()), static_cast<std::streamsize>(file.size()));
    }
    const auto f = safetensors_file::open(dir.path / "m.safetensors");
    REQUIRE(f.owner() != nullptr);
    REQUIRE(f.tensor("x").data.size() == 4);
    REQUIRE_THROWS_AS(safetensors_file::open(dir.path / "none.safetensors"), file_format_error);
    REQUIRE_THROWS_WITH(safetensors_file::open(dir.path / "none.safetensors"), Contains("expected an existing file"));
    REQUIRE_THROWS_WITH(safetensors_file::open(dir.path), Contains("found a directory"));
}

TEST_CASE("every broken safetensors rule is an error naming it", "[io][safetensors]") {
    auto one = [](const std::string& entry, std::size_t data_bytes) {
        return file_of("{" + entry + "}", bytes(data_bytes));
    };
    const std::string ok = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
    REQUIRE_NOTHROW(read(one(ok, 8)));

    struct broken {
        std::vector<std::byte> file;
        const char* message;
    };
    std::vector<std::byte> huge(8);
    huge[4] = std::byte{1};  // 2^32 bytes of header
    std::vector<std::byte> longer = file_of("{}", {});
    longer[0] = std::byte{200};
    const broken cases[] = {
        {std::vector<std::byte>(5), "fewer than the 8 of the header length"},
        {huge, "more than the format's limit"},
        {longer, "claims 200 bytes, but the file has 2"},
        {file_of("{not json", {}), "header: is not valid JSON"},
        {file_of("[1,2]", {}), "is JSON but not an object"},
        {file_of(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", bytes(8)),
         "tensor 'w': appears twice"},
        {one(R"("w":[1])", 0), "is not a JSON object"},
        {one(R"("w":{"dtype":"F31","shape":[2],"data_offsets":[0,8]})", 8), "dtype 'F31'"},
        {one(R"("w":{"shape":[2],"data_offsets":[0,8]})", 8), "has no dtype"},
        {one(R"("w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]})", 8), "shape entry -2"},
        {one(R"("w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]})", 8), "shape entry 2.5"},
        {one(R"("w":{"dtype":"F32","shape":"2","data_offsets":[0,8]})", 8), "has shape \"2\" of the wrong JSON type"},
        {one(R"("w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]})", 8), "overflows 64 bits"},
        {one(R"("w":{"dtype":"F64","shape":[4294967296,1073741824],"data_offsets":[0,8]})", 8), "byte size that overflows"},
        {one(R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0]})", 8), "expected [begin, end]"},
        {one(R"("w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]})", 8), "end before they begin"},
        {one(R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,12]})", 12), "12 bytes, but its shape and dtype F32 take 8"},
        {one(R"("w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]})", 8), "ends at byte 16 of the data, which has 8"},
        {one(R"("w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]})", 12), "begins at byte 4 of the data, but the tensors before it end at 0 (a hole)"},
        {one(R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]})", 8),
         "(they overlap)"},
        {one(ok, 9), "data: has 9 bytes, but the tensors take 8"},
        {one(R"("__metadata__":{"format":1})", 0), "__metadata__: has 'format' = 1, not a string"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.message);
        REQUIRE_THROWS_AS(read(c.file), file_format_error);
        REQUIRE_THROWS_WITH(read(c.file), Contains(c.message) && Contains("t.safetensors"));
    }
}
