// The GGUF reader: every fixture llama.cpp made opens with the metadata and tensor
// types its README lists and data where ggml's dequantization says; typed getters
// convert or name what they found; every malformed file is a gguf_error whose message
// names the file, the key or tensor and the problem (never a crash or a read out of
// bounds: truncation at every byte is tried).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <unistd.h>

#include <catch2/catch.hpp>

#include "kvdecode/io/gguf.hpp"
#include "kvdecode/quant/half.hpp"
#include "support/gguf_bytes.hpp"
#include "support/json.hpp"
#include "support/test_data.hpp"

using namespace kvdecode;
using kvtest::gguf_bytes;
using kvtest::kv;
using kvtest::kv_string;
using kvtest::kv_u32;
using kvtest::raw_gguf;
using kvtest::small_gguf;

namespace {

// The message of the gguf_error that reading `bytes` throws (fails the test if none).
std::string error_of(const std::vector<std::byte>& bytes, const std::string& name = "crafted.gguf") {
    try {
        (void)gguf_file::from_memory(bytes, name);
    } catch (const gguf_error& e) {
        CHECK(e.file() == name);
        return e.what();
    }
    FAIL("no gguf_error for a file that should be rejected");
    return {};
}

// What the README says of each fixture.
struct expected_file {
    std::string file;
    std::string architecture;
    std::uint64_t context, embedding, blocks, heads, kv_heads;
    std::string tokenizer;
    std::uint64_t tokens, bos, eos;
    std::map<std::string, std::size_t> types;      // 2-D (and every) tensor type -> count, 1-D F32 included
    std::map<std::string, std::string> exceptions;  // tensor -> type, where it differs from the file's main type
    std::optional<std::uint64_t> file_type;         // general.file_type, absent in the F32 llama2.c conversions
    bool check_file_type = true;                    // (the HF converter's values are not in the README)
};

// The KJV model's files: 30 2-D tensors + 9 norms; the named exceptions from the README.
std::vector<expected_file> expected_files() {
    auto kjv = [](std::string file, std::map<std::string, std::size_t> types, std::map<std::string, std::string> ex,
                  std::optional<std::uint64_t> ft) {
        types["F32"] += 9;
        return expected_file{"gguf/" + file, "llama", 256, 192, 4, 6, 2, "llama", 1024, 1, 2, types, ex, ft};
    };
    auto rand = [](std::string file, std::map<std::string, std::size_t> types, std::map<std::string, std::string> ex,
                   std::optional<std::uint64_t> ft) {
        types["F32"] += 5;
        return expected_file{"gguf/" + file, "llama", 256, 256, 2, 8, 4, "llama", 1024, 1, 2, types, ex, ft};
    };
    auto hf = [](std::string file, std::string arch, std::uint64_t embedding, std::uint64_t blocks, std::uint64_t heads,
                 std::uint64_t kv_heads, std::string tok, std::uint64_t tokens, std::uint64_t bos, std::uint64_t eos,
                 std::map<std::string, std::size_t> types, std::map<std::string, std::string> ex) {
        return expected_file{"gguf/from-hf/" + file, arch, 512, embedding, blocks, heads, kv_heads, tok, tokens, bos, eos,
                             types, ex, std::nullopt, false};
    };
    const std::map<std::string, std::string> kjv_mixed = {
        {"output.weight", "Q8_0"}, {"blk.2.attn_v.weight", "Q8_0"}, {"blk.3.attn_v.weight", "Q8_0"},
        {"blk.2.ffn_down.weight", "Q6_K"}, {"blk.3.ffn_down.weight", "Q6_K"}};
    auto with = [](std::map<std::string, std::string> m, std::map<std::string, std::string> more) {
        m.insert(more.begin(), more.end());
        return m;
    };
    const std::map<std::string, std::string> rand_km = {
        {"output.weight", "Q6_K"}, {"blk.1.attn_v.weight", "Q6_K"}, {"blk.1.ffn_down.weight", "Q6_K"}};
    return {
        kjv("kjv-f32.gguf", {{"F32", 30}}, {}, std::nullopt),
        kjv("kjv-f16.gguf", {{"F16", 30}}, {}, 1),
        kjv("kjv-q8_0.gguf", {{"Q8_0", 30}}, {}, 7),
        kjv("kjv-q8_0-q6_k.gguf", {{"Q8_0", 26}, {"Q6_K", 4}},
            {{"blk.0.ffn_down.weight", "Q6_K"}, {"blk.1.ffn_down.weight", "Q6_K"}, {"blk.2.ffn_down.weight", "Q6_K"},
             {"blk.3.ffn_down.weight", "Q6_K"}},
            18),
        kjv("kjv-q5_1-q5_k-q6_k-q8_0.gguf", {{"Q5_1", 23}, {"Q5_K", 2}, {"Q6_K", 2}, {"Q8_0", 3}},
            with(kjv_mixed, {{"blk.0.ffn_down.weight", "Q5_K"}, {"blk.1.ffn_down.weight", "Q5_K"}}), 17),
        kjv("kjv-q5_0-q4_k-q6_k-q8_0.gguf", {{"Q5_0", 23}, {"Q4_K", 2}, {"Q6_K", 2}, {"Q8_0", 3}},
            with(kjv_mixed, {{"blk.0.ffn_down.weight", "Q4_K"}, {"blk.1.ffn_down.weight", "Q4_K"}}), 15),
        kjv("kjv-q4_0.gguf", {{"Q4_0", 29}, {"Q8_0", 1}}, {{"output.weight", "Q8_0"}}, 2),
        rand("rand256-q8_0.gguf", {{"Q8_0", 16}}, {}, 7),
        rand("rand256-q6_k.gguf", {{"Q6_K", 16}}, {}, 18),
        rand("rand256-q5_k_m.gguf", {{"Q5_K", 13}, {"Q6_K", 3}}, rand_km, 17),
        rand("rand256-q4_k_m.gguf", {{"Q4_K", 13}, {"Q6_K", 3}}, rand_km, 15),
        rand("rand256-q4_0.gguf", {{"Q4_0", 15}, {"Q6_K", 1}}, {{"output.weight", "Q6_K"}}, 2),
        hf("llama-tiny-f32-f32.gguf", "llama", 128, 2, 4, 2, "llama", 1500, 1, 2, {{"F32", 21}}, {}),
        hf("llama-tiny-f32-q8_0.gguf", "llama", 128, 2, 4, 2, "llama", 1500, 1, 2, {{"Q8_0", 16}, {"F32", 5}}, {}),
        hf("llama-tiny-bf16-sharded-f32.gguf", "llama", 128, 3, 4, 2, "llama", 1500, 1, 2, {{"F32", 31}},
           {{"rope_freqs.weight", "F32"}}),
        hf("llama-tiny-bf16-sharded-q8_0.gguf", "llama", 128, 3, 4, 2, "llama", 1500, 1, 2, {{"Q8_0", 23}, {"F32", 8}},
           {{"rope_freqs.weight", "F32"}}),
        hf("qwen2-tiny-bf16-f32.gguf", "qwen2", 128, 2, 4, 2, "gpt2", 2000, 1997, 1999, {{"F32", 26}}, {}),
        hf("qwen2-tiny-bf16-q8_0.gguf", "qwen2", 128, 2, 4, 2, "gpt2", 2000, 1997, 1999, {{"Q8_0", 15}, {"F32", 11}},
           {{"blk.0.attn_q.bias", "F32"}}),
        hf("smollm-tiny-f16-f32.gguf", "llama", 96, 2, 3, 1, "gpt2", 2000, 1997, 1999, {{"F32", 20}}, {}),
        hf("smollm-tiny-f16-q8_0.gguf", "llama", 96, 2, 3, 1, "gpt2", 2000, 1997, 1999, {{"Q8_0", 15}, {"F32", 5}}, {}),
        hf("smollm-tiny-f16-q4_k_m.gguf", "llama", 96, 2, 3, 1, "gpt2", 2000, 1997, 1999,
           {{"Q5_0", 11}, {"Q8_0", 2}, {"Q4_K", 1}, {"Q6_K", 1}, {"F32", 5}},
           {{"token_embd.weight", "Q8_0"}, {"blk.1.attn_v.weight", "Q8_0"}, {"blk.0.ffn_down.weight", "Q4_K"},
            {"blk.1.ffn_down.weight", "Q6_K"}}),
        hf("smollm-tiny-f16-q4_0.gguf", "llama", 96, 2, 3, 1, "gpt2", 2000, 1997, 1999,
           {{"Q4_0", 14}, {"Q8_0", 1}, {"F32", 5}}, {{"token_embd.weight", "Q8_0"}}),
    };
}

}  // namespace

TEST_CASE("every GGUF fixture opens with the metadata and tensor types of its README", "[io][gguf]") {
    for (const auto& want : expected_files()) {
        const auto path = kvtest::shared_file("fixtures/" + want.file);
        if (!path) return;
        INFO(want.file);
        const auto f = gguf_file::open(*path);
        CHECK(f.version() == 3);
        CHECK(f.size() == std::filesystem::file_size(*path));
        CHECK(f.alignment() == 32);
        CHECK_FALSE(f.has("general.alignment"));  // llama.cpp's default applies
        CHECK(f.data_offset() % 32 == 0);
        CHECK(f.owner() != nullptr);

        const std::string& a = want.architecture;
        CHECK(f.string("general.architecture") == a);
        CHECK(f.uint(a + ".context_length") == want.context);  // 256 for the llama2.c conversions after the fix-up
        CHECK(f.uint(a + ".embedding_length") == want.embedding);
        CHECK(f.uint(a + ".block_count") == want.blocks);
        CHECK(f.uint(a + ".attention.head_count") == want.heads);
        CHECK(f.uint(a + ".attention.head_count_kv") == want.kv_heads);
        if (want.check_file_type) CHECK(f.find_uint("general.file_type") == want.file_type);
        CHECK(f.string("tokenizer.ggml.model") == want.tokenizer);
        CHECK(f.strings("tokenizer.ggml.tokens").size() == want.tokens);
        CHECK(f.ints("tokenizer.ggml.token_type").size() == want.tokens);
        CHECK(f.uint("tokenizer.ggml.bos_token_id") == want.bos);
        CHECK(f.uint("tokenizer.ggml.eos_token_id") == want.eos);

        std::map<std::string, std::size_t> types;
        for (const auto& t : f.tensors()) {
            ++types[std::string(to_string(t.type))];
            CHECK(f.find_tensor(t.name) == &t);
            CHECK(t.bytes == gguf_tensor_bytes(t.type, t.shape));
            const auto d = f.data(t);
            CHECK(d.size() == t.bytes);
            CHECK(d.data() == f.bytes().data() + f.data_offset() + t.offset);  // in place, no copy
            if (t.shape.size() == 1) CHECK(t.type == gguf_type::f32);     // every 1-D tensor is F32
        }
        CHECK(types == want.types);
        for (const auto& [name, type] : want.exceptions) CHECK(to_string(f.tensor(name).type) == type);
        // The last tensor ends the file: llama.cpp's layout, with nothing after it.
        const auto last = std::max_element(f.tensors().begin(), f.tensors().end(),
                                           [](const auto& x, const auto& y) { return x.offset < y.offset; });
        CHECK(f.data_offset() + last->offset + (last->bytes + 31) / 32 * 32 == f.size());
    }
}

TEST_CASE("GGUF fixtures: the metadata details the model and vocabulary loaders rely on", "[io][gguf]") {
    const auto kjv = kvtest::shared_file("fixtures/gguf/kjv-f32.gguf");
    const auto llama = kvtest::shared_file("fixtures/gguf/from-hf/llama-tiny-bf16-sharded-f32.gguf");
    const auto qwen = kvtest::shared_file("fixtures/gguf/from-hf/qwen2-tiny-bf16-q8_0.gguf");
    const auto smol = kvtest::shared_file("fixtures/gguf/from-hf/smollm-tiny-f16-q4_0.gguf");
    if (!kjv || !llama || !qwen || !smol) return;

    const auto k = gguf_file::open(*kjv);
    CHECK(k.string("general.name") == "llama");
    CHECK(k.uint("llama.rope.dimension_count") == 32);
    CHECK(k.uint("llama.feed_forward_length") == 512);
    CHECK(k.real("llama.attention.layer_norm_rms_epsilon") == Approx(1e-5));
    CHECK_FALSE(k.find_real("llama.rope.freq_base"));  // llama.cpp's default 10000 then
    CHECK(k.uint("tokenizer.ggml.unknown_token_id") == 0);
    CHECK(k.uint("tokenizer.ggml.padding_token_id") == 0xffffffffu);
    const auto pieces = k.strings("tokenizer.ggml.tokens");
    CHECK(pieces[0] == "<unk>");
    CHECK(pieces[1] == "<s>");
    CHECK(pieces[3] == "<0x00>");
    const auto token_types = k.ints("tokenizer.ggml.token_type");
    CHECK(token_types[0] == 2);  // unknown
    CHECK(token_types[1] == 3);  // control
    CHECK(token_types[3] == 6);  // byte
    CHECK(k.floats("tokenizer.ggml.scores").size() == 1024);
    // The converter writes the shared classifier twice: same values in the F32 file.
    const auto out = k.data(k.tensor("output.weight")), emb = k.data(k.tensor("token_embd.weight"));
    REQUIRE(out.size() == emb.size());
    CHECK(std::memcmp(out.data(), emb.data(), out.size()) == 0);
    CHECK(k.tensor("token_embd.weight").shape == std::vector<std::uint64_t>{192, 1024});
    CHECK(k.tensor("token_embd.weight").row_length() == 192);
    CHECK(k.tensor("token_embd.weight").rows() == 1024);

    const auto l = gguf_file::open(*llama);
    CHECK(l.real("llama.rope.freq_base") == 500000.0);
    CHECK(l.boolean("tokenizer.ggml.add_bos_token"));
    CHECK_FALSE(l.boolean("tokenizer.ggml.add_eos_token"));
    CHECK(l.string("tokenizer.ggml.pre") == "default");
    CHECK(l.uint("llama.vocab_size") == 1500);
    const auto scores = l.floats("tokenizer.ggml.scores");
    CHECK(std::all_of(scores.begin(), scores.end(), [](float s) { return s == -1000.0f; }));
    const auto types = l.ints("tokenizer.ggml.token_type");
    CHECK(std::count(types.begin(), types.end(), 3) == 3);
    CHECK(std::count(types.begin(), types.end(), 6) == 256);
    CHECK(std::count(types.begin(), types.end(), 1) == 1241);
    const auto& freqs = l.tensor("rope_freqs.weight");
    CHECK(freqs.shape == std::vector<std::uint64_t>{16});
    std::vector<float> factors(16);
    std::memcpy(factors.data(), l.data(freqs).data(), 64);
    CHECK(factors[0] == 1.0f);
    CHECK(factors[2] == Approx(2.4423).epsilon(1e-4));
    CHECK(factors[15] == 8.0f);

    const auto q = gguf_file::open(*qwen);
    CHECK(q.real("qwen2.rope.freq_base") == 1e6);
    CHECK(q.real("qwen2.attention.layer_norm_rms_epsilon") == Approx(1e-6));
    CHECK(q.uint("tokenizer.ggml.padding_token_id") == 1997);
    CHECK(q.strings("tokenizer.ggml.merges").size() == 1741);
    CHECK_FALSE(q.find_bool("tokenizer.ggml.add_bos_token"));
    CHECK(q.find_string("tokenizer.chat_template").has_value());
    CHECK(q.find_tensor("output.weight") == nullptr);  // tied
    CHECK(q.tensor("blk.1.attn_k.bias").type == gguf_type::f32);
    REQUIRE_THROWS_WITH(q.tensor("output.weight"), Catch::Contains("qwen2-tiny-bf16-q8_0.gguf: tensor 'output.weight': is missing"));

    const auto s = gguf_file::open(*smol);
    CHECK(s.find_bool("tokenizer.ggml.add_space_prefix") == false);
    CHECK(s.find_tensor("output.weight") == nullptr);
}

TEST_CASE("GGUF fixtures: tensor data is where ggml's dequantization found it", "[io][gguf]") {
    const auto ref_path = kvtest::shared_file("fixtures/gguf/dequant_reference.json");
    if (!ref_path) return;
    const auto refs = kvtest::json::parse(kvtest::read_text(*ref_path));
    std::size_t checked = 0;
    for (const auto& r : refs) {
        // F16 and Q8_0 decode in a few lines here; the other types are the quant tests' business.
        const std::string type = r["type"];
        if (type != "f16" && type != "q8_0") continue;
        const std::string file = r["file"];
        INFO(file << " " << r["tensor"].get<std::string>());
        const auto f = gguf_file::open(*kvtest::shared_file("fixtures/gguf/" + file));
        const auto& t = f.tensor(r["tensor"].get<std::string>());
        CHECK(std::vector<std::uint64_t>(r["shape"]) == t.shape);
        const auto d = f.data(t);
        auto value = [&](std::size_t i) {
            std::uint16_t h;
            if (type == "f16") {
                std::memcpy(&h, d.data() + 2 * i, 2);
                return quant::f16_to_f32(h);
            }
            const std::size_t block = i / 32, at = i % 32;
            std::memcpy(&h, d.data() + 34 * block, 2);
            return quant::f16_to_f32(h) * static_cast<float>(static_cast<std::int8_t>(d[34 * block + 2 + at]));
        };
        const auto first = r["first_values"].get<std::vector<float>>();
        for (std::size_t i = 0; i < first.size(); ++i) REQUIRE(value(i) == first[i]);
        double sum = 0;
        for (std::size_t i = 0; i < t.elements(); ++i) sum += value(i);
        CHECK(sum == Approx(r["full_sum"].get<double>()).epsilon(1e-9));
        ++checked;
    }
    CHECK(checked == 15);  // the F16 and Q8_0 entries of the reference file
}

TEST_CASE("GGUF: the mapping outlives the gguf_file through owner()", "[io][gguf]") {
    const auto path = kvtest::shared_file("fixtures/gguf/kjv-q8_0.gguf");
    if (!path) return;
    std::shared_ptr<const void> owner;
    std::span<const std::byte> data;
    std::vector<std::byte> copy;
    {
        const auto f = gguf_file::open(*path);
        owner = f.owner();
        data = f.data(f.tensor("output.weight"));
        copy.assign(data.begin(), data.end());
    }
    REQUIRE(owner != nullptr);
    CHECK(std::equal(data.begin(), data.end(), copy.begin(), copy.end()));  // still mapped
    const auto bytes = small_gguf().build();
    CHECK(gguf_file::from_memory(bytes).owner() == nullptr);
}

TEST_CASE("GGUF: a small crafted file reads back field by field", "[io][gguf]") {
    const auto bytes = small_gguf().build();
    const auto f = gguf_file::from_memory(bytes, "small.gguf");
    CHECK(f.name() == "small.gguf");
    CHECK(f.version() == 3);
    REQUIRE(f.metadata().size() == 6);
    CHECK(f.metadata()[0].key == "general.architecture");  // file order kept
    CHECK(f.metadata()[5].key == "tokenizer.ggml.scores");
    CHECK(f.string("general.architecture") == "llama");
    CHECK(f.boolean("general.flag"));
    CHECK(f.real("some.float") == 0.5);
    CHECK(f.strings("tokenizer.ggml.tokens") == std::vector<std::string>{"<s>", "a"});
    CHECK(f.floats("tokenizer.ggml.scores") == std::vector<float>{0.0f, -1.5f});
    REQUIRE(f.tensors().size() == 2);
    const auto& a = f.tensors()[0];
    CHECK(a.name == "a.weight");
    CHECK(a.type == gguf_type::f32);
    CHECK(a.shape == std::vector<std::uint64_t>{4, 2});
    CHECK(a.bytes == 32);
    const auto& b = f.tensor("b.weight");
    CHECK(b.type == gguf_type::q8_0);
    CHECK(b.bytes == 34);
    CHECK(b.offset == 32);
    CHECK(f.data_offset() % 32 == 0);
    CHECK(f.data(b).data() == bytes.data() + f.data_offset() + 32);
    CHECK(f.data_offset() + 66 == bytes.size());
    // Data of a tensor of another file is refused rather than read out of bounds.
    gguf_tensor_info far = b;
    far.offset = 1 << 20;
    REQUIRE_THROWS_WITH(f.data(far), Catch::Contains("small.gguf: tensor 'b.weight': is not a tensor of this file"));
    const auto listing = describe(f);
    CHECK_THAT(listing, Catch::Contains("general.architecture (string) = 'llama'"));
    CHECK_THAT(listing, Catch::Contains("tokenizer.ggml.scores (array) = [2 x float32: 0, -1.5]"));
    CHECK_THAT(listing, Catch::Contains("b.weight Q8_0 [32] at"));
    CHECK_THAT(listing, Catch::Contains("2 tensors: F32 x1 Q8_0 x1"));

    // Version 2 has the same layout.
    auto v2 = small_gguf();
    v2.version = 2;
    const auto v2_bytes = v2.build();
    CHECK(gguf_file::from_memory(v2_bytes).version() == 2);
}

TEST_CASE("GGUF typed getters convert between integer widths where the value fits", "[io][gguf]") {
    raw_gguf g;
    g.kvs = {kv("u8", 0, gguf_bytes().put(std::uint8_t{200})),
             kv("i8", 1, gguf_bytes().put(std::int8_t{-5})),
             kv("u16", 2, gguf_bytes().put(std::uint16_t{65535})),
             kv("i16", 3, gguf_bytes().put(std::int16_t{1234})),
             kv_u32("u32", 4000000000u),
             kv("i32", 5, gguf_bytes().put(std::int32_t{-7})),
             kv("f32", 6, gguf_bytes().put(2.5f)),
             kv("bool", 7, gguf_bytes().put(std::uint8_t{0})),
             kv_string("str", "text"),
             kv("u64", 10, gguf_bytes().u64(~std::uint64_t{0})),
             kv("i64", 11, gguf_bytes().put(std::int64_t{-9000000000})),
             kv("f64", 12, gguf_bytes().put(0.125)),
             kv("ints", 9, gguf_bytes().u32(10).u64(2).u64(5).u64(3000000000u)),
             kv("i16s", 9, gguf_bytes().u32(3).u64(3).put(std::int16_t{-1}).put(std::int16_t{2}).put(std::int16_t{3})),
             kv("f64s", 9, gguf_bytes().u32(12).u64(1).put(0.25)),
             kv("bools", 9, gguf_bytes().u32(7).u64(2).put(std::uint8_t{1}).put(std::uint8_t{0})),
             kv("empty", 9, gguf_bytes().u32(8).u64(0))};
    const auto bytes = g.build();
    const auto f = gguf_file::from_memory(bytes, "types.gguf");

    CHECK(type_of(f.value("u8")) == gguf_value_type::u8);
    CHECK(type_of(f.value("f64")) == gguf_value_type::f64);
    CHECK(f.uint("u8") == 200);
    CHECK(f.int_("u8") == 200);
    CHECK(f.int_("i8") == -5);
    CHECK(f.uint("u16") == 65535);
    CHECK(f.uint("i16") == 1234);  // a signed type holding a non-negative value
    CHECK(f.uint("u32") == 4000000000u);
    CHECK(f.int_("i32") == -7);
    CHECK(f.uint("u64") == ~std::uint64_t{0});
    CHECK(f.int_("i64") == -9000000000);
    CHECK(f.real("f32") == 2.5);
    CHECK(f.real("f64") == 0.125);
    CHECK_FALSE(f.boolean("bool"));
    CHECK(f.string("str") == "text");
    CHECK(f.ints("i16s") == std::vector<std::int32_t>{-1, 2, 3});
    CHECK(f.floats("f64s") == std::vector<float>{0.25f});
    CHECK(f.array("bools").at<bool>(0));
    CHECK(f.array("ints").at<std::uint64_t>(1) == 3000000000u);
    CHECK(f.strings("empty").empty());
    CHECK(f.find_uint("absent") == std::nullopt);
    CHECK(f.find_string("absent") == std::nullopt);
    CHECK(f.find_real("absent") == std::nullopt);
    CHECK(f.find_bool("absent") == std::nullopt);
    CHECK(f.find_int("absent") == std::nullopt);
    CHECK(f.find_uint("u8") == 200);

    // Anything else names the key, what was wanted and what was found.
    using Catch::Contains;
    REQUIRE_THROWS_AS(f.uint("i8"), gguf_error);
    REQUIRE_THROWS_WITH(f.uint("i8"), Contains("types.gguf: key 'i8': wanted an unsigned integer (>= 0), found int8 -5"));
    REQUIRE_THROWS_WITH(f.find_uint("i64"), Contains("key 'i64': wanted an unsigned integer (>= 0), found int64 -9000000000"));
    REQUIRE_THROWS_WITH(f.int_("u64"), Contains("key 'u64': wanted an integer that fits int64, found uint64 18446744073709551615"));
    REQUIRE_THROWS_WITH(f.uint("f32"), Contains("key 'f32': wanted an unsigned integer, found float32 2.5"));
    REQUIRE_THROWS_WITH(f.uint("str"), Contains("key 'str': wanted an unsigned integer, found string 'text'"));
    REQUIRE_THROWS_WITH(f.real("u32"), Contains("key 'u32': wanted a float32 or float64, found uint32 4000000000"));
    REQUIRE_THROWS_WITH(f.boolean("u8"), Contains("key 'u8': wanted a bool, found uint8 200"));
    REQUIRE_THROWS_WITH(f.string("bool"), Contains("key 'bool': wanted a string, found bool false"));
    REQUIRE_THROWS_WITH(f.strings("ints"), Contains("key 'ints': wanted an array of string, found an array of uint64 [2 x uint64: 5, 3000000000]"));
    REQUIRE_THROWS_WITH(f.ints("ints"), Contains("key 'ints': wanted an array of int32, found element 1 = 3000000000 (uint64), which does not fit"));
    REQUIRE_THROWS_WITH(f.ints("bools"), Contains("key 'bools': wanted an array of int32, found an array of bool"));
    REQUIRE_THROWS_WITH(f.floats("i16s"), Contains("key 'i16s': wanted an array of float32, found an array of int16"));
    REQUIRE_THROWS_WITH(f.array("str"), Contains("key 'str': wanted an array, found string"));
    REQUIRE_THROWS_WITH(f.uint("absent"), Contains("types.gguf: key 'absent': is missing"));
    REQUIRE_THROWS_WITH(f.strings("absent"), Contains("key 'absent': is missing"));
}

TEST_CASE("GGUF: truncation at every byte offset of a valid file is a gguf_error", "[io][gguf]") {
    const auto whole = small_gguf().build();
    REQUIRE_NOTHROW(gguf_file::from_memory(whole));
    for (std::size_t n = 0; n < whole.size(); ++n) {
        INFO("the first " << n << " of " << whole.size() << " bytes");
        // A copy of exactly n bytes, so that AddressSanitizer sees any read past its end.
        const std::vector<std::byte> prefix(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(n));
        REQUIRE_THROWS_AS(gguf_file::from_memory(prefix, "cut.gguf"), gguf_error);
        REQUIRE_THROWS_WITH(gguf_file::from_memory(prefix, "cut.gguf"), Catch::StartsWith("kvdecode: cut.gguf: "));
    }
}

TEST_CASE("GGUF: malformed headers name what is wrong", "[io][gguf]") {
    using Catch::Contains;
    auto g = small_gguf();
    g.magic = "GGML";
    CHECK_THAT(error_of(g.build()), Contains("crafted.gguf: header: not a GGUF file: the magic is 'GGML', expected 'GGUF'"));
    CHECK_THAT(error_of({}), Contains("crafted.gguf: header: the file has 0 bytes, too few for the magic"));

    for (std::uint32_t version : {0u, 1u, 4u, 99u}) {
        g = small_gguf();
        g.version = version;
        const auto message = error_of(g.build());
        CHECK_THAT(message, Contains("header: GGUF version " + std::to_string(version) + " is not supported"));
        CHECK_THAT(message, Contains("kvdecode reads versions 2 and 3"));
    }
    g = small_gguf();
    g.version = 0x03000000;  // version 3 written big-endian
    CHECK_THAT(error_of(g.build()), Contains("header: the version reads 0x03000000: a big-endian (byte-swapped) GGUF file"));

    g = small_gguf();
    g.n_tensors = std::uint64_t{1} << 40;
    CHECK_THAT(error_of(g.build()), Contains("header: 1099511627776 tensor infos (at least 33 bytes each) do not fit"));
    g = small_gguf();
    g.n_kv = std::uint64_t{1} << 62;
    CHECK_THAT(error_of(g.build()), Contains("header: 4611686018427387904 metadata entries (at least 14 bytes each) do not fit"));
    g = small_gguf();
    g.n_kv = 7;  // one more than there are: the tensor infos are read as metadata and fail
    CHECK_THAT(error_of(g.build()), Catch::StartsWith("kvdecode: crafted.gguf: "));
}

TEST_CASE("GGUF: malformed metadata names the key", "[io][gguf]") {
    using Catch::Contains;
    auto with_kv = [](std::vector<std::byte> pair) {
        auto g = small_gguf();
        g.kvs.insert(g.kvs.begin() + 1, std::move(pair));
        return g.build();
    };
    // Lengths and counts far beyond the file.
    CHECK_THAT(error_of(with_kv(kv("big.string", 8, gguf_bytes().u64(std::uint64_t{1} << 60)))),
               Contains("key 'big.string': a string of 1152921504606846976 bytes at offset"));
    CHECK_THAT(error_of(with_kv(kv("big.string", 8, gguf_bytes().u64(std::uint64_t{1} << 60)))),
               Contains("runs past the end of the file"));
    CHECK_THAT(error_of(with_kv(kv("big.array", 9, gguf_bytes().u32(0).u64(std::uint64_t{1} << 50)))),
               Contains("key 'big.array': an array of 1125899906842624 uint8 at offset"));
    CHECK_THAT(error_of(with_kv(kv("big.array", 9, gguf_bytes().u32(11).u64(~std::uint64_t{0})))),
               Contains("key 'big.array': an array of 18446744073709551615 int64 at offset"));
    CHECK_THAT(error_of(with_kv(kv("big.strings", 9, gguf_bytes().u32(8).u64(std::uint64_t{1} << 50)))),
               Contains("key 'big.strings': an array of 1125899906842624 string (at least 8 bytes each)"));
    CHECK_THAT(error_of(with_kv(kv("long.piece", 9, gguf_bytes().u32(8).u64(1).u64(std::uint64_t{1} << 60)))),
               Contains("key 'long.piece': a string in an array of 1152921504606846976 bytes"));
    gguf_bytes long_key;
    long_key.u64(std::uint64_t{1} << 60);
    CHECK_THAT(error_of(with_kv(long_key.bytes())), Contains("metadata entry 1: a key of 1152921504606846976 bytes"));
    // Types.
    CHECK_THAT(error_of(with_kv(kv("bad.type", 13, gguf_bytes().u32(0)))),
               Contains("key 'bad.type': unknown value type 13 (GGUF defines 0 to 12)"));
    CHECK_THAT(error_of(with_kv(kv("bad.element", 9, gguf_bytes().u32(77).u64(0)))),
               Contains("key 'bad.element': unknown value type 77"));
    CHECK_THAT(error_of(with_kv(kv("nested", 9, gguf_bytes().u32(9).u64(1).u32(4).u64(0)))),
               Contains("key 'nested': is an array of arrays, which kvdecode does not support"));
    CHECK_THAT(error_of(with_kv(kv("flag", 7, gguf_bytes().put(std::uint8_t{2})))),
               Contains("key 'flag': bool value is 2; expected 0 or 1"));
    CHECK_THAT(error_of(with_kv(kv("flags", 9, gguf_bytes().u32(7).u64(2).put(std::uint8_t{0}).put(std::uint8_t{5})))),
               Contains("key 'flags': bool element 1 is 5; expected 0 or 1"));
    // Keys.
    CHECK_THAT(error_of(with_kv(kv("", 4, gguf_bytes().u32(1)))), Contains("metadata entry 1: the key is empty"));
    CHECK_THAT(error_of(with_kv(kv_u32("llama.context_length", 512))),
               Contains("key 'llama.context_length': appears twice (entries 1 and 2)"));
    // Alignment.
    CHECK_THAT(error_of(with_kv(kv_u32("general.alignment", 48))),
               Contains("key 'general.alignment': is 48; expected a power of two"));
    CHECK_THAT(error_of(with_kv(kv_u32("general.alignment", 0))), Contains("key 'general.alignment': is 0; expected a power of two"));
    CHECK_THAT(error_of(with_kv(kv("general.alignment", 10, gguf_bytes().u64(32)))),
               Contains("key 'general.alignment': wanted a uint32, found uint64 32"));
}

TEST_CASE("GGUF: malformed tensor infos and data name the tensor", "[io][gguf]") {
    using Catch::Contains;
    auto with_tensor = [](kvtest::raw_tensor t) {
        auto g = small_gguf();
        g.tensors[1] = std::move(t);
        return g.build();
    };
    CHECK_THAT(error_of(with_tensor({"b.weight", {32}, 8, 40})),
               Contains("tensor 'b.weight': data offset 40 is not a multiple of the alignment 32"));
    CHECK_THAT(error_of(with_tensor({"b.weight", {64}, 8, 32})),
               Contains("tensor 'b.weight': data [") && Contains(") runs past the end of the file ("));
    {
        // The message in full: absolute file offsets and the file's size.
        const auto bytes = with_tensor({"b.weight", {64}, 8, 32});
        const auto start = bytes.size() - 66;  // data section: the file's last 66 bytes
        CHECK(error_of(bytes) == "kvdecode: crafted.gguf: tensor 'b.weight': data [" + std::to_string(start + 32) + ", " +
                                     std::to_string(start + 32 + 68) + ") runs past the end of the file (" +
                                     std::to_string(bytes.size()) + " bytes)");
    }
    CHECK_THAT(error_of(with_tensor({"b.weight", {32}, 8, ~std::uint64_t{0} - 31})),
               Contains("tensor 'b.weight': data [2^64+, 2^64+) runs past the end of the file"));
    CHECK_THAT(error_of(with_tensor({"b.weight", {4}, 0, 0})),
               Contains("tensor 'b.weight': data [") && Contains("overlaps tensor 'a.weight'"));
    CHECK_THAT(error_of(with_tensor({"b.weight", {32}, 77, 32})), Contains("tensor 'b.weight': has unknown type id 77"));
    CHECK_THAT(error_of(with_tensor({"b.weight", {32}, 31, 32})),
               Contains("tensor 'b.weight': has type id 31 (Q4_0_4_4), which ggml removed from GGUF files"));
    CHECK_THAT(error_of(with_tensor({"b.weight", {32}, 4, 32})), Contains("has type id 4 (Q4_2), which ggml removed"));
    CHECK_THAT(error_of(with_tensor({"b.weight", {}, 8, 32})), Contains("tensor 'b.weight': n_dims is 0; expected 1 to 4"));
    CHECK_THAT(error_of(with_tensor({"b.weight", {32, 1, 1, 1, 1}, 8, 32})),
               Contains("tensor 'b.weight': n_dims is 5; expected 1 to 4"));
    CHECK_THAT(error_of(with_tensor({"b.weight", {32, 0}, 8, 32})),
               Contains("tensor 'b.weight': of type Q8_0 and shape [32, 0]: dimension 1 is 0"));
    CHECK_THAT(error_of(with_tensor({"b.weight", {48}, 8, 32})),
               Contains("tensor 'b.weight': of type Q8_0 and shape [48]: row length 48 is not a multiple of Q8_0's block of 32 values"));
    CHECK_THAT(error_of(with_tensor({"b.weight", {100, 2}, 12, 32})),
               Contains("row length 100 is not a multiple of Q4_K's block of 256 values"));
    CHECK_THAT(error_of(with_tensor({"b.weight", {std::uint64_t{1} << 32, std::uint64_t{1} << 32}, 0, 32})),
               Contains("tensor 'b.weight': of type F32 and shape [4294967296, 4294967296]: has more than 2^63 - 1 elements"));
    CHECK_THAT(error_of(with_tensor({"b.weight", {std::uint64_t{1} << 62}, 0, 32})),
               Contains("shape [4611686018427387904]: takes more than 2^63 - 1 bytes"));
    CHECK_THAT(error_of(with_tensor({"a.weight", {32}, 8, 32})), Contains("tensor 'a.weight': appears twice (tensors 0 and 1)"));
    CHECK_THAT(error_of(with_tensor({"", {32}, 8, 32})), Contains("tensor 1: the name is empty"));
    {
        // A tensor name claiming 2^60 bytes where the infos start.
        raw_gguf header_only = small_gguf();
        header_only.tensors.clear();
        header_only.n_tensors = 1;
        header_only.pad_to = 1;
        header_only.data_bytes = 0;
        auto b = header_only.build();
        gguf_bytes tail;
        tail.u64(std::uint64_t{1} << 60).zeros(40);
        b.insert(b.end(), tail.bytes().begin(), tail.bytes().end());
        CHECK_THAT(error_of(b), Contains("tensor 0: a tensor name of 1152921504606846976 bytes at offset"));
    }
    {
        // The data section itself starts past the end.
        auto g = small_gguf();
        g.pad_to = 1;  // no padding written, and no data
        g.data_bytes = 0;
        CHECK_THAT(error_of(g.build()), Contains("data section: starts at offset"));
    }
    {
        // The error is the same through open() on a file on disk.
        const auto bytes = with_tensor({"b.weight", {32}, 77, 32});
        const auto path = std::filesystem::temp_directory_path() / ("kvdecode_gguf_test_" + std::to_string(::getpid()) + ".gguf");
        std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
        REQUIRE_THROWS_WITH(gguf_file::open(path), Contains(path.string() + ": tensor 'b.weight': has unknown type id 77"));
        std::filesystem::remove(path);
    }
}

TEST_CASE("GGUF: open() names what is at the path when it is not a file", "[io][gguf]") {
    using Catch::Contains;
    const auto missing = std::filesystem::temp_directory_path() / "kvdecode-no-such-file.gguf";
    REQUIRE_THROWS_AS(gguf_file::open(missing), gguf_error);
    REQUIRE_THROWS_AS(gguf_file::open(missing), model_format_error);  // what the CLI catches
    REQUIRE_THROWS_WITH(gguf_file::open(missing), Contains("kvdecode-no-such-file.gguf: file: expected an existing file"));
    REQUIRE_THROWS_WITH(gguf_file::open(std::filesystem::temp_directory_path()), Contains("file: expected a regular file, found a directory"));
    const auto empty = std::filesystem::temp_directory_path() / ("kvdecode_empty_" + std::to_string(::getpid()) + ".gguf");
    std::ofstream(empty).close();
    REQUIRE_THROWS_WITH(gguf_file::open(empty), Contains("header: the file has 0 bytes"));
    std::filesystem::remove(empty);
}

TEST_CASE("GGUF type table: every ggml type's block, and the byte size of a tensor", "[io][gguf]") {
    CHECK(to_string(gguf_type::q4_k) == "Q4_K");
    CHECK(to_string(gguf_type::bf16) == "BF16");
    CHECK(to_string(gguf_type::iq2_xs) == "IQ2_XS");
    CHECK(traits(gguf_type::q6_k).block_bytes == 210);
    CHECK(traits(gguf_type::q8_0).block_values == 32);
    CHECK(traits(gguf_type::f16).block_bytes == 2);
    // Ids 0..41 are all either defined or removed, nothing in between.
    for (std::uint32_t id = 0; id <= 41; ++id) {
        INFO("type id " << id);
        const bool removed = id == 4 || id == 5 || (id >= 31 && id <= 33) || (id >= 36 && id <= 38);
        CHECK((find_gguf_type(id) == nullptr) == removed);
    }
    CHECK(find_gguf_type(42) == nullptr);
    const std::vector<std::uint64_t> shape = {512, 192};
    CHECK(gguf_tensor_bytes(gguf_type::q4_k, shape) == 192 * 2 * 144);
    CHECK(gguf_tensor_bytes(gguf_type::f32, shape) == 512 * 192 * 4);
    const std::vector<std::uint64_t> odd = {192, 2};
    REQUIRE_THROWS_WITH(gguf_tensor_bytes(gguf_type::q6_k, odd), Catch::Contains("row length 192 is not a multiple of Q6_K's block of 256 values"));
}
