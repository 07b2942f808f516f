// The GGUF writer: llama.cpp's fixtures written back from what the reader read are
// byte-identical to the originals; every value type survives a round trip; tensor
// sizes, names and the alignment are checked; write() replaces the target atomically.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <system_error>
#include <vector>

#include <unistd.h>

#include <catch2/catch.hpp>

#include "kvdecode/io/gguf.hpp"
#include "kvdecode/io/gguf_writer.hpp"
#include "support/temp_dir.hpp"
#include "support/test_data.hpp"

using namespace kvdecode;

namespace {

using kvtest::temp_dir;

std::vector<std::byte> read_all(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::byte> out(c.size());
    if (!c.empty()) std::memcpy(out.data(), c.data(), c.size());
    return out;
}

std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
    std::vector<std::byte> out(n);
    for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::byte>((i * 131 + seed * 17 + (i >> 7)) & 0xff);
    return out;
}

template <class T>
gguf_value value_of(T v) {
    return gguf_value(std::in_place_type<T>, v);
}

const std::vector<std::string> fixture_files = {
    "kjv-f32.gguf", "kjv-f16.gguf", "kjv-q8_0.gguf", "kjv-q8_0-q6_k.gguf", "kjv-q5_1-q5_k-q6_k-q8_0.gguf",
    "kjv-q5_0-q4_k-q6_k-q8_0.gguf", "kjv-q4_0.gguf", "rand256-q8_0.gguf", "rand256-q6_k.gguf",
    "rand256-q5_k_m.gguf", "rand256-q4_k_m.gguf", "rand256-q4_0.gguf",
    "from-hf/llama-tiny-f32-f32.gguf", "from-hf/llama-tiny-f32-q8_0.gguf",
    "from-hf/llama-tiny-bf16-sharded-f32.gguf", "from-hf/llama-tiny-bf16-sharded-q8_0.gguf",
    "from-hf/qwen2-tiny-bf16-f32.gguf", "from-hf/qwen2-tiny-bf16-q8_0.gguf", "from-hf/smollm-tiny-f16-f32.gguf",
    "from-hf/smollm-tiny-f16-q8_0.gguf", "from-hf/smollm-tiny-f16-q4_k_m.gguf", "from-hf/smollm-tiny-f16-q4_0.gguf"};

}  // namespace

TEST_CASE("every GGUF fixture written back from what the reader read is byte-identical", "[io][gguf][writer]") {
    temp_dir dir;
    for (const auto& name : fixture_files) {
        const auto path = kvtest::shared_file("fixtures/gguf/" + name);
        if (!path) return;
        INFO(name);
        const auto f = gguf_file::open(*path);
        gguf_writer w;
        w.copy_metadata(f);
        for (const auto& t : f.tensors()) w.copy_tensor(f, t);
        const auto planned = w.tensors();
        REQUIRE(planned.size() == f.tensors().size());
        for (std::size_t i = 0; i < planned.size(); ++i) CHECK(planned[i].offset == f.tensors()[i].offset);
        const auto out = dir.path / "copy.gguf";
        w.write(out);
        const auto original = f.bytes();
        const auto copy = read_all(out);
        REQUIRE(copy.size() == original.size());
        CHECK(std::memcmp(copy.data(), original.data(), copy.size()) == 0);
    }
}

TEST_CASE("gguf_writer: every value type reads back as written", "[io][gguf][writer]") {
    gguf_writer w;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    w.set("u8", value_of<std::uint8_t>(255))
        .set("i8", value_of<std::int8_t>(-128))
        .set("u16", value_of<std::uint16_t>(65535))
        .set("i16", value_of<std::int16_t>(-32768))
        .set("u32", value_of<std::uint32_t>(4294967295u))
        .set("i32", value_of<std::int32_t>(std::numeric_limits<std::int32_t>::min()))
        .set("f32", value_of<float>(-0.0f))
        .set("f32.nan", value_of<float>(nan))
        .set("bool", value_of<bool>(true))
        .set("string", "plain text")
        .set("string.bytes", gguf_value(std::string("a\0b\xff", 4)))
        .set("string.empty", gguf_value(std::string()))
        .set("u64", value_of<std::uint64_t>(std::numeric_limits<std::uint64_t>::max()))
        .set("i64", value_of<std::int64_t>(std::numeric_limits<std::int64_t>::min()))
        .set("f64", value_of<double>(1e300))
        .set("a.u8", std::vector<std::uint8_t>{0, 1, 255})
        .set("a.i8", std::vector<std::int8_t>{-1, 2})
        .set("a.u16", std::vector<std::uint16_t>{7})
        .set("a.i16", std::vector<std::int16_t>{-7, 8})
        .set("a.u32", std::vector<std::uint32_t>{1, 2, 3})
        .set("a.i32", std::vector<std::int32_t>{-1, 0, 1})
        .set("a.f32", std::vector<float>{1.5f, nan, -0.0f})
        .set("a.bool", std::vector<bool>{true, false, true})
        .set("a.string", std::vector<std::string>{"<s>", "", "\xe2\x96\x81the"})
        .set("a.u64", std::vector<std::uint64_t>{~std::uint64_t{0}})
        .set("a.i64", std::vector<std::int64_t>{-5})
        .set("a.f64", std::vector<double>{0.1, -2})
        .set("a.empty", std::vector<float>{})
        .set("a.empty.strings", std::vector<std::string>{});
    const auto bytes = w.to_bytes();
    const auto f = gguf_file::from_memory(bytes, "values.gguf");
    REQUIRE(f.metadata().size() == w.metadata().size());
    for (std::size_t i = 0; i < f.metadata().size(); ++i) {
        INFO(w.metadata()[i].key);
        CHECK(f.metadata()[i].key == w.metadata()[i].key);  // order as set
        CHECK(type_of(f.metadata()[i].value) == type_of(w.metadata()[i].value));
        CHECK(describe(f.metadata()[i].value, 100, 100) == describe(w.metadata()[i].value, 100, 100));
    }
    CHECK(f.uint("u8") == 255);
    CHECK(f.int_("i8") == -128);
    CHECK(f.int_("i16") == -32768);
    CHECK(f.int_("i32") == std::numeric_limits<std::int32_t>::min());
    CHECK(std::signbit(f.real("f32")));
    CHECK(std::isnan(f.real("f32.nan")));
    CHECK(f.boolean("bool"));
    CHECK(f.string("string.bytes") == std::string("a\0b\xff", 4));
    CHECK(f.string("string.empty").empty());
    CHECK(f.uint("u64") == std::numeric_limits<std::uint64_t>::max());
    CHECK(f.int_("i64") == std::numeric_limits<std::int64_t>::min());
    CHECK(f.real("f64") == 1e300);
    CHECK(f.array("a.u8") == gguf_array(std::vector<std::uint8_t>{0, 1, 255}));
    CHECK(f.ints("a.i8") == std::vector<std::int32_t>{-1, 2});
    CHECK(f.ints("a.u16") == std::vector<std::int32_t>{7});
    CHECK(f.ints("a.i16") == std::vector<std::int32_t>{-7, 8});
    CHECK(f.ints("a.u32") == std::vector<std::int32_t>{1, 2, 3});
    CHECK(f.ints("a.i32") == std::vector<std::int32_t>{-1, 0, 1});
    CHECK(f.array("a.f32") == gguf_array(std::vector<float>{1.5f, nan, -0.0f}));  // bytes: NaN and -0 kept
    CHECK(f.array("a.bool") == gguf_array(std::vector<bool>{true, false, true}));
    CHECK(f.strings("a.string") == std::vector<std::string>{"<s>", "", "\xe2\x96\x81the"});
    CHECK(f.array("a.u64").at<std::uint64_t>(0) == ~std::uint64_t{0});
    CHECK(f.ints("a.i64") == std::vector<std::int32_t>{-5});
    CHECK(f.floats("a.f64") == std::vector<float>{0.1f, -2.0f});
    CHECK(f.floats("a.empty").empty());
    CHECK(f.strings("a.empty.strings").empty());
    CHECK(f.tensors().empty());

    // Copied into another writer, the same bytes come out (NaN, -0 and all).
    gguf_writer again;
    again.copy_metadata(f);
    CHECK(again.to_bytes() == bytes);
}

TEST_CASE("gguf_writer: set replaces in place, remove drops, order is kept", "[io][gguf][writer]") {
    gguf_writer w;
    w.set("a", value_of<std::uint32_t>(1)).set("b", "x").set("c", value_of<bool>(false));
    w.set("a", value_of<std::int64_t>(-1));
    CHECK(w.remove("b"));
    CHECK_FALSE(w.remove("b"));
    REQUIRE(w.metadata().size() == 2);
    CHECK(w.metadata()[0].key == "a");
    CHECK(type_of(w.metadata()[0].value) == gguf_value_type::i64);
    CHECK(w.metadata()[1].key == "c");
    const auto bytes = w.to_bytes();
    const auto f = gguf_file::from_memory(bytes);
    CHECK(f.int_("a") == -1);
    CHECK_FALSE(f.has("b"));
}

TEST_CASE("gguf_writer: tensors of several types with general.alignment honoured", "[io][gguf][writer]") {
    temp_dir dir;
    for (std::uint32_t align : {1u, 8u, 32u, 64u, 4096u}) {
        INFO("alignment " << align);
        gguf_writer w;
        w.set("general.architecture", "llama");
        if (align != 32) w.set("general.alignment", value_of<std::uint32_t>(align));
        struct spec {
            std::string name;
            std::vector<std::uint64_t> shape;
            gguf_type type;
        };
        const std::vector<spec> specs = {{"token_embd.weight", {64, 3}, gguf_type::q8_0},
                                         {"norm.weight", {5}, gguf_type::f32},
                                         {"blk.0.ffn_down.weight", {256, 2}, gguf_type::q4_k},
                                         {"blk.0.b", {3, 1, 2}, gguf_type::bf16},
                                         {"blk.0.c", {32, 1, 1, 2}, gguf_type::q4_0},
                                         {"blk.0.d", {256}, gguf_type::q6_k}};
        std::vector<std::vector<std::byte>> data;
        for (std::size_t i = 0; i < specs.size(); ++i) {
            data.push_back(pattern(gguf_tensor_bytes(specs[i].type, specs[i].shape), static_cast<unsigned>(i)));
            w.add_tensor(specs[i].name, specs[i].shape, specs[i].type, data.back());
        }
        data[0][0] = std::byte{0x55};  // add_tensor copied: later changes to the caller's bytes do not matter
        const auto path = dir.path / "t.gguf";
        w.write(path);
        const auto f = gguf_file::open(path);
        CHECK(f.alignment() == align);
        CHECK(f.data_offset() % align == 0);
        REQUIRE(f.tensors().size() == specs.size());
        for (std::size_t i = 0; i < specs.size(); ++i) {
            const auto& t = f.tensors()[i];
            CHECK(t.name == specs[i].name);
            CHECK(t.shape == specs[i].shape);
            CHECK(t.type == specs[i].type);
            CHECK(t.offset % align == 0);
            const auto d = f.data(t);
            const auto want = pattern(gguf_tensor_bytes(specs[i].type, specs[i].shape), static_cast<unsigned>(i));
            CHECK(std::equal(d.begin(), d.end(), want.begin(), want.end()));
            // The padding after it is zeros, up to the next multiple of the alignment.
            const auto end = f.data_offset() + t.offset + t.bytes;
            for (auto p = end; p < f.size() && p % align != 0; ++p) CHECK(f.bytes()[p] == std::byte{0});
        }
        CHECK(f.size() % align == 0);
    }
}

TEST_CASE("gguf_writer: bad tensors, names and alignments are invalid_argument naming them", "[io][gguf][writer]") {
    using Catch::Contains;
    gguf_writer w;
    const auto bytes = pattern(34, 1);
    REQUIRE_THROWS_AS(w.add_tensor("t", {64}, gguf_type::q8_0, bytes), std::invalid_argument);
    REQUIRE_THROWS_WITH(w.add_tensor("t", {64}, gguf_type::q8_0, bytes),
                        Contains("tensor 't': 34 bytes given; a Q8_0 tensor of shape [64] takes 68"));
    REQUIRE_THROWS_WITH(w.add_tensor("t", {48}, gguf_type::q8_0, bytes),
                        Contains("tensor 't': of type Q8_0 and shape [48]: row length 48 is not a multiple of Q8_0's block of 32 values"));
    REQUIRE_THROWS_WITH(w.add_tensor("t", {}, gguf_type::q8_0, bytes), Contains("has 0 dimensions; expected 1 to 4"));
    REQUIRE_THROWS_WITH(w.add_tensor("t", {32, 1, 1, 1, 1}, gguf_type::q8_0, bytes), Contains("has 5 dimensions"));
    REQUIRE_THROWS_WITH(w.add_tensor("t", {32, 0}, gguf_type::q8_0, bytes), Contains("dimension 1 is 0"));
    REQUIRE_THROWS_WITH(w.add_tensor("", {32}, gguf_type::q8_0, bytes), Contains("the name is empty"));
    REQUIRE_THROWS_WITH(w.add_tensor(std::string(64, 'n'), {32}, gguf_type::q8_0, bytes),
                        Contains("the name has 64 bytes; ggml allows 63"));
    REQUIRE_THROWS_WITH(w.add_tensor("t", {32}, static_cast<gguf_type>(31), bytes), Contains("type id 31 is not a ggml type"));
    w.add_tensor("t", {32}, gguf_type::q8_0, bytes);
    REQUIRE_THROWS_WITH(w.add_tensor("t", {32}, gguf_type::q8_0, bytes), Contains("tensor 't': a tensor of this name was already added"));
    REQUIRE_THROWS_WITH(w.set("general.alignment", value_of<std::uint32_t>(48)), Contains("general.alignment must be a power of two, not 48"));
    REQUIRE_THROWS_WITH(w.set("general.alignment", value_of<std::uint64_t>(64)), Contains("general.alignment must be a uint32, not uint64"));
    REQUIRE_THROWS_WITH(w.set("", value_of<bool>(true)), Contains("a metadata key must not be empty"));
    CHECK(w.tensors().size() == 1);  // the failed calls added nothing
    CHECK(w.metadata().empty());
}

TEST_CASE("gguf_writer: write() replaces the target atomically and leaves nothing behind on failure", "[io][gguf][writer]") {
    temp_dir dir;
    gguf_writer w;
    w.set("general.architecture", "llama");
    w.add_tensor("a", {8}, gguf_type::f32, pattern(32, 3));
    const auto target = dir.path / "model.gguf";
    w.write(target);
    const auto first = gguf_file::open(target);  // mapped while it is replaced
    const auto first_data = first.data(first.tensor("a"));
    const std::vector<std::byte> before(first_data.begin(), first_data.end());

    gguf_writer w2;
    w2.set("general.architecture", "qwen2");
    w2.add_tensor("b", {16}, gguf_type::f16, pattern(32, 4));
    w2.write(target);
    const auto second = gguf_file::open(target);
    CHECK(second.string("general.architecture") == "qwen2");
    CHECK(std::equal(first_data.begin(), first_data.end(), before.begin(), before.end()));  // the old mapping is intact
    CHECK(first.string("general.architecture") == "llama");

    // Failures: a folder that does not exist, and a target that is a directory.
    REQUIRE_THROWS_AS(w.write(dir.path / "no-such-folder" / "x.gguf"), std::system_error);
    REQUIRE_THROWS_WITH(w.write(dir.path / "no-such-folder" / "x.gguf"), Catch::Contains("cannot create a temporary file in"));
    std::filesystem::create_directories(dir.path / "occupied");
    std::filesystem::create_directories(dir.path / "occupied" / "inside");  // a non-empty directory cannot be renamed over
    REQUIRE_THROWS_WITH(w.write(dir.path / "occupied"), Catch::Contains("cannot rename"));
    std::size_t entries = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir.path)) {
        INFO(e.path().string());
        CHECK((e.path().filename() == "model.gguf" || e.path().filename() == "occupied"));
        ++entries;
    }
    CHECK(entries == 2);  // no temporary file left
    CHECK(gguf_file::open(target).string("general.architecture") == "qwen2");
}
