// config.json and generation_config.json (io/hf_config.hpp), and the folder loader's
// checks (io/hf_model.hpp) on small models written here: both RoPE spellings, Llama 3
// scaling against transformers' formula worked by hand, and every unsupported option
// or inconsistent file an error naming it.

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numbers>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/io/hf_model.hpp"
#include "kvdecode/model/decode_context.hpp"
#include "support/json.hpp"
#include "support/temp_dir.hpp"
#include "support/test_data.hpp"

using namespace kvdecode;
using Catch::Matchers::Contains;
using kvtest::json;

namespace {

json llama_config() {
    return json::parse(R"({
      "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 16, "intermediate_size": 24,
      "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 10,
      "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
      "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"})");
}

hf_config parse(const json& j) { return parse_hf_config(j.dump(), "config.json"); }

// A safetensors file of F32 tensors with the given names and shapes; values from each
// tensor's name and index, so the same tensor has the same values in any file.
std::vector<std::byte> safetensors_of(const std::vector<std::pair<std::string, std::vector<std::uint64_t>>>& tensors) {
    json header = json::object();
    std::vector<float> data;
    for (const auto& [name, shape] : tensors) {
        std::uint64_t n = 1;
        for (auto d : shape) n *= d;
        header[name] = {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {data.size() * 4, (data.size() + n) * 4}}};
        const std::size_t seed = std::hash<std::string>{}(name) % 101;
        for (std::uint64_t i = 0; i < n; ++i) data.push_back(0.01f * static_cast<float>((seed + i * 37) % 23) - 0.1f);
    }
    const std::string text = header.dump();
    std::vector<std::byte> out(8 + text.size() + data.size() * 4);
    const std::uint64_t len = text.size();
    std::memcpy(out.data(), &len, 8);
    std::memcpy(out.data() + 8, text.data(), text.size());
    std::memcpy(out.data() + 8 + text.size(), data.data(), data.size() * 4);
    return out;
}

using tensor_list = std::vector<std::pair<std::string, std::vector<std::uint64_t>>>;

tensor_list llama_tensors() {
    return {{"model.embed_tokens.weight", {10, 16}},
            {"model.layers.0.input_layernorm.weight", {16}},
            {"model.layers.0.self_attn.q_proj.weight", {16, 16}},
            {"model.layers.0.self_attn.k_proj.weight", {8, 16}},
            {"model.layers.0.self_attn.v_proj.weight", {8, 16}},
            {"model.layers.0.self_attn.o_proj.weight", {16, 16}},
            {"model.layers.0.post_attention_layernorm.weight", {16}},
            {"model.layers.0.mlp.gate_proj.weight", {24, 16}},
            {"model.layers.0.mlp.up_proj.weight", {24, 16}},
            {"model.layers.0.mlp.down_proj.weight", {16, 24}},
            {"model.norm.weight", {16}},
            {"lm_head.weight", {10, 16}}};
}

void write(const std::filesystem::path& p, const std::string& text) {
    std::ofstream(p, std::ios::binary) << text;
}
void write(const std::filesystem::path& p, const std::vector<std::byte>& bytes) {
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

TEST_CASE("config.json gives the model_config, in both RoPE spellings", "[io][hf][config]") {
    const hf_config h = parse(llama_config());
    REQUIRE(h.architecture == "LlamaForCausalLM");
    REQUIRE(h.model.dim == 16);
    REQUIRE(h.model.hidden_dim == 24);
    REQUIRE(h.model.head_dim == 8);
    REQUIRE(h.model.n_kv_heads == 1);
    REQUIRE(h.model.seq_len == 64);
    REQUIRE(h.model.rope == rope_layout::rotate_half);
    REQUIRE_FALSE(h.model.shared_classifier);
    REQUIRE_FALSE(h.model.qkv_bias);
    REQUIRE(h.bos == 1);
    REQUIRE(h.eos == std::vector<token_id>{2});
    REQUIRE(h.dtype == "float32");

    json q = llama_config();
    q["architectures"] = {"Qwen2ForCausalLM"};
    q["model_type"] = "qwen2";
    q.erase("rope_theta");
    q["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1e6}};
    q["eos_token_id"] = {2, 3};
    q["head_dim"] = 4;
    q["layer_types"] = {"full_attention"};
    const hf_config qh = parse(q);
    REQUIRE(qh.model.rope_theta == 1e6);
    REQUIRE(qh.model.qkv_bias);
    REQUIRE(qh.model.head_dim == 4);
    REQUIRE(qh.eos == std::vector<token_id>{2, 3});

    json linear = llama_config();
    linear["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
    REQUIRE(parse(linear).model.rope_linear_scale == 4.0);
    REQUIRE(parse(linear).rope_type == "linear");

    // Mistral v0.1: a 4096-token sliding window over a 32768-token context is exact
    // only within the window, which becomes the context.
    json mistral = llama_config();
    mistral["architectures"] = {"MistralForCausalLM"};
    mistral["model_type"] = "mistral";
    mistral["sliding_window"] = 16;
    REQUIRE(parse(mistral).model.seq_len == 16);
    mistral["sliding_window"] = nullptr;
    REQUIRE(parse(mistral).model.seq_len == 64);
}

TEST_CASE("Llama 3 RoPE scaling gives transformers' frequencies, from either spelling", "[io][hf][config]") {
    // The bf16 fixture's settings: theta 500000, factor 8, low 1, high 4, original 64, head_dim 32.
    json j = llama_config();
    j["hidden_size"] = 128;
    j["num_attention_heads"] = 4;
    j["num_key_value_heads"] = 2;
    j["rope_theta"] = 500000.0;
    j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                         {"original_max_position_embeddings", 64}};
    const hf_config h = parse(j);
    const auto& f = h.model.rope_freq_factors;
    REQUIRE(f.size() == 16);
    // transformers: wavelen = 2 pi / inv_freq; kept below 64/4 = 16, divided by 8 above 64,
    // interpolated between: smooth = (64 / wavelen - 1) / 3, inv / ((1 - smooth) / 8 + smooth).
    int kept = 0, smoothed = 0, divided = 0;
    for (std::size_t i = 0; i < 16; ++i) {
        const double inv = std::pow(500000.0, -2.0 * double(i) / 32.0);
        const double wavelen = 2 * std::numbers::pi / inv;
        double want = 1.0;
        if (wavelen > 64) want = 8.0, ++divided;
        else if (wavelen >= 16) want = 1.0 / ((1 - (64 / wavelen - 1) / 3) / 8 + (64 / wavelen - 1) / 3), ++smoothed;
        else ++kept;
        CAPTURE(i);
        REQUIRE(f[i] == Approx(want).epsilon(1e-6));
    }
    REQUIRE(kept == 2);  // as the fixtures' README says: pairs 0-1 kept, pair 2 smoothed, 3-15 divided
    REQUIRE(smoothed == 1);
    REQUIRE(divided == 13);

    json native = j;
    native.erase("rope_scaling");
    native.erase("rope_theta");
    native["rope_parameters"] = j["rope_scaling"];
    native["rope_parameters"]["rope_theta"] = 500000.0;
    REQUIRE(parse(native).model.rope_freq_factors == f);
    REQUIRE(parse(native).model.rope_theta == 500000.0);
}

TEST_CASE("config.json options kvdecode does not implement are errors naming them", "[io][hf][config]") {
    struct broken {
        const char* key;
        json value;
        const char* message;
    };
    const broken cases[] = {
        {"architectures", {"GPT2LMHeadModel"}, "is 'GPT2LMHeadModel', which kvdecode does not support; supported: LlamaForCausalLM"},
        {"architectures", "LlamaForCausalLM", "expected a list of one architecture name"},
        {"model_type", "qwen2", "key 'model_type': is 'qwen2', but LlamaForCausalLM is 'llama'"},
        {"hidden_act", "gelu", "key 'hidden_act': is 'gelu'"},
        {"attention_bias", true, "biases on q, k, v and o_proj are not supported"},
        {"mlp_bias", true, "MLP biases are not supported"},
        {"partial_rotary_factor", 0.5, "rotates whole heads"},
        {"rope_scaling", {{"rope_type", "yarn"}, {"factor", 4.0}}, "is 'yarn', which kvdecode does not support; supported: default, linear, llama3"},
        {"rope_scaling", {{"rope_type", "dynamic"}, {"factor", 2.0}}, "is 'dynamic'"},
        {"rope_scaling", {{"rope_type", "linear"}}, "rope_scaling.factor': is missing"},
        {"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}}, "original_max_position_embeddings': is missing"},
        {"rope_scaling", "linear", "expected an object"},
        {"hidden_size", nullptr, "key 'hidden_size': is missing"},
        {"hidden_size", -16, "expected an integer from 0 to"},
        {"hidden_size", "16", "expected an integer from 0 to"},
        {"num_hidden_layers", 0, "is 0; expected a positive count"},
        {"num_key_value_heads", 3, "n_heads (2) is not a multiple of n_kv_heads (3)"},
        {"eos_token_id", 10, "key 'eos_token_id': is 10, not a token id (vocab_size 10)"},
        {"rms_norm_eps", "small", "expected a number"},
        {"tie_word_embeddings", 1, "expected true or false"},
        {"layer_types", {"chunked_attention"}, "supported: full_attention, sliding_attention"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.key, c.value.dump());
        json j = llama_config();
        if (c.value.is_null()) j.erase(c.key);
        else j[c.key] = c.value;
        REQUIRE_THROWS_AS(parse(j), file_format_error);
        REQUIRE_THROWS_WITH(parse(j), Contains(c.message) && Contains("config.json"));
    }
    REQUIRE_THROWS_WITH(parse_hf_config("{\"a\":", "c.json"), Contains("c.json: file: is not valid JSON"));
    REQUIRE_THROWS_WITH(parse_hf_config("[]", "c.json"), Contains("is JSON but not an object"));
}

TEST_CASE("generation_config.json gives generate()'s defaults", "[io][hf][config]") {
    const auto g = parse_hf_generation_config(
        R"({"bos_token_id": 1, "eos_token_id": [2, 3], "do_sample": true, "temperature": 0.6, "top_p": 0.9,
            "top_k": 20, "max_new_tokens": 100, "repetition_penalty": 1.1, "early_stopping": "never",
            "transformers_version": "5.17.0"})",
        10);
    REQUIRE(g.bos == 1);
    REQUIRE(g.eos == std::vector<token_id>{2, 3});
    REQUIRE(g.do_sample == true);
    REQUIRE(g.temperature == 0.6);
    REQUIRE(g.top_p == 0.9);
    REQUIRE(g.top_k == 20);
    REQUIRE(g.max_new_tokens == 100);
    REQUIRE(g.repetition_penalty == 1.1);
    REQUIRE(g.early_stopping == "never");
    REQUIRE_FALSE(g.num_beams);
    REQUIRE_THROWS_WITH(parse_hf_generation_config(R"({"eos_token_id": 12})", 10), Contains("not a token id"));
    REQUIRE_THROWS_WITH(parse_hf_generation_config(R"({"early_stopping": "soon"})", 10), Contains("expected true, false or \"never\""));
}

TEST_CASE("a model folder loads; missing, extra, misshapen or untyped tensors are errors naming them", "[io][hf][model]") {
    kvtest::temp_dir dir;
    write(dir.path / "config.json", llama_config().dump());
    write(dir.path / "model.safetensors", safetensors_of(llama_tensors()));
    const transformer<float> model = load_hf_model(dir.path);
    REQUIRE(model.config().dim == 16);
    REQUIRE(read_hf_folder(dir.path).generation == std::nullopt);

    auto with = [&](tensor_list t) {
        write(dir.path / "model.safetensors", safetensors_of(t));
        return dir.path;
    };
    tensor_list missing = llama_tensors();
    missing.pop_back();
    REQUIRE_THROWS_WITH(load_hf_model(with(missing)), Contains("model.safetensors: tensor 'lm_head.weight': is missing"));
    tensor_list extra = llama_tensors();
    extra.push_back({"model.layers.0.self_attn.o_proj.bias", {16}});
    REQUIRE_THROWS_WITH(load_hf_model(with(extra)),
                        Contains("tensor 'model.layers.0.self_attn.o_proj.bias': is not a tensor of kvdecode's LlamaForCausalLM model"));
    tensor_list misshapen = llama_tensors();
    misshapen[2].second = {16, 8};
    REQUIRE_THROWS_WITH(load_hf_model(with(misshapen)), Contains("has shape [16, 8]; the config needs [16, 16]"));
    // Old checkpoints' RoPE buffers are recomputed from the config, as transformers does.
    tensor_list buffers = llama_tensors();
    buffers.push_back({"model.layers.0.self_attn.rotary_emb.inv_freq", {4}});
    REQUIRE_NOTHROW(load_hf_model(with(buffers)));

    // Tied: an lm_head.weight in the file is not used, as in transformers.
    json tied = llama_config();
    tied["tie_word_embeddings"] = true;
    write(dir.path / "config.json", tied.dump());
    REQUIRE(load_hf_model(with(llama_tensors())).config().shared_classifier);
    missing = llama_tensors();
    missing.pop_back();
    REQUIRE_NOTHROW(load_hf_model(with(missing)));

    std::filesystem::remove(dir.path / "model.safetensors");
    REQUIRE_THROWS_WITH(load_hf_model(dir.path), Contains("expected model.safetensors or model.safetensors.index.json"));
    REQUIRE_THROWS_WITH(load_hf_model(dir.path / "nothing"), Contains("config.json: file: expected an existing regular file"));
    REQUIRE_THROWS_WITH(read_hf_folder(dir.path / "nothing"), Contains("expected a Hugging Face model folder"));
}

TEST_CASE("sharded weights follow the index, and an index that disagrees with its shards is an error", "[io][hf][model]") {
    kvtest::temp_dir dir;
    write(dir.path / "config.json", llama_config().dump());
    tensor_list all = llama_tensors(), first(all.begin(), all.begin() + 6), second(all.begin() + 6, all.end());
    write(dir.path / "a.safetensors", safetensors_of(first));
    write(dir.path / "b.safetensors", safetensors_of(second));
    auto index_of = [&](const std::string& last_file) {
        json map = json::object();
        for (const auto& [n, s] : first) map[n] = "a.safetensors";
        for (const auto& [n, s] : second) map[n] = "b.safetensors";
        map["lm_head.weight"] = last_file;
        return json{{"metadata", {{"total_size", 0}}}, {"weight_map", map}}.dump();
    };
    write(dir.path / "model.safetensors.index.json", index_of("b.safetensors"));
    const auto files = hf_weight_files::open(dir.path);
    REQUIRE(files.files().size() == 2);
    const transformer<float> sharded = load_hf_model(dir.path);

    // The same tensors in one file give the same logits.
    kvtest::temp_dir one;
    write(one.path / "config.json", llama_config().dump());
    write(one.path / "model.safetensors", safetensors_of(all));
    const transformer<float> single = load_hf_model(one.path);
    decode_context<float> a(sharded), b(single);
    auto ca = sharded.make_cache(), cb = single.make_cache();
    std::vector<float> la(10), lb(10);
    const std::vector<token_id> prompt{1, 5, 7};
    a.forward(std::vector{sequence_tokens{ca.create(), prompt}}, ca, la);
    b.forward(std::vector{sequence_tokens{cb.create(), prompt}}, cb, lb);
    REQUIRE(la == lb);

    write(dir.path / "model.safetensors.index.json", index_of("a.safetensors"));
    REQUIRE_THROWS_WITH(load_hf_model(dir.path), Contains("weight_map 'lm_head.weight': names") && Contains("which has no such tensor"));
    write(dir.path / "model.safetensors.index.json", index_of("../b.safetensors"));
    REQUIRE_THROWS_WITH(load_hf_model(dir.path), Contains("names '../b.safetensors'; expected a file name in the model's folder"));
    write(dir.path / "model.safetensors.index.json", index_of("c.safetensors"));
    REQUIRE_THROWS_WITH(load_hf_model(dir.path), Contains("c.safetensors: file: expected an existing file"));
    json partial = json::parse(index_of("b.safetensors"));
    partial["weight_map"].erase("model.norm.weight");
    write(dir.path / "model.safetensors.index.json", partial.dump());
    REQUIRE_THROWS_WITH(load_hf_model(dir.path), Contains("tensor 'model.norm.weight': is not in") && Contains("weight_map"));
    write(dir.path / "model.safetensors.index.json", std::string(R"({"weight_map": [1]})"));
    REQUIRE_THROWS_WITH(load_hf_model(dir.path), Contains("expected an object of tensor name to file name"));
}

TEST_CASE("the fixtures' config.json files read as their README describes", "[io][hf][config][shared]") {
    const auto qwen = kvtest::shared_file("fixtures/hf/qwen2-tiny-bf16");
    const auto sharded = kvtest::shared_file("fixtures/hf/llama-tiny-bf16-sharded");
    if (!qwen || !sharded) return;
    const hf_folder q = read_hf_folder(*qwen);
    REQUIRE(q.config.model.rope_theta == 1e6);  // from rope_parameters (transformers 5's spelling)
    REQUIRE(q.config.model.norm_eps == 1e-6);
    REQUIRE(q.config.model.qkv_bias);
    REQUIRE(q.config.model.shared_classifier);
    REQUIRE(q.generation->eos == std::vector<token_id>{1999, 1997});
    const hf_folder s = read_hf_folder(*sharded);
    REQUIRE(s.config.rope_type == "llama3");
    REQUIRE(s.config.model.rope_freq_factors.size() == 16);
    REQUIRE(hf_weight_files::open(*sharded).files().size() == 3);
}
