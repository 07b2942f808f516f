// A Hugging Face folder decoded as stored (bf16 safetensors) against the same model
// converted to Q8_0 GGUF by kvdecode's converter (io/hf_gguf.hpp), side by side:
//   hf_folder/decode/SHAPE/TYPE/threads:N: one token through the model (context 16 to
//     144, cycled), tokens/s and MB of weights read per token. TYPE bf16 is the folder
//     as load_hf_model reads it; q8_0 the GGUF file gguf_from_hf writes from it.
// Each folder is written when first used into a temporary directory (the benchmarks'
// shapes, random weights, BF16, one model.safetensors), and removed at exit.

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "kvdecode/io/gguf_model.hpp"
#include "kvdecode/io/hf_gguf.hpp"
#include "kvdecode/io/hf_model.hpp"
#include "kvdecode/model/decode_context.hpp"
#include "kvdecode/quant/half.hpp"
#include "support/shapes.hpp"

namespace {

using namespace kvdecode;
namespace fs = std::filesystem;

// A shape's random weights as a BF16 Hugging Face folder (LlamaForCausalLM, untied).
struct folder {
    fs::path path;
    explicit folder(const kvbench::shape& s)
        : path(fs::temp_directory_path() / ("kvdecode_hf_bench_" + s.name + "_" + std::to_string(::getpid()))) {
        const model_config& c = s.config;
        const auto& w = *kvbench::weights_for(s);
        struct tensor {
            std::string name;
            std::vector<std::size_t> shape;
            const float* data;
        };
        std::vector<tensor> tensors = {{"model.embed_tokens.weight", {c.vocab_size, c.dim}, w.token_embedding()},
                                       {"model.norm.weight", {c.dim}, w.rms_final()},
                                       {"lm_head.weight", {c.vocab_size, c.dim}, w.classifier()}};
        for (std::size_t l = 0; l < c.n_layers; ++l) {
            const std::string p = "model.layers." + std::to_string(l) + ".";
            tensors.push_back({p + "input_layernorm.weight", {c.dim}, w.rms_att(l)});
            tensors.push_back({p + "self_attn.q_proj.weight", {c.q_dim(), c.dim}, w.wq(l)});
            tensors.push_back({p + "self_attn.k_proj.weight", {c.kv_dim(), c.dim}, w.wk(l)});
            tensors.push_back({p + "self_attn.v_proj.weight", {c.kv_dim(), c.dim}, w.wv(l)});
            tensors.push_back({p + "self_attn.o_proj.weight", {c.dim, c.q_dim()}, w.wo(l)});
            tensors.push_back({p + "post_attention_layernorm.weight", {c.dim}, w.rms_ffn(l)});
            tensors.push_back({p + "mlp.gate_proj.weight", {c.hidden_dim, c.dim}, w.w1(l)});
            tensors.push_back({p + "mlp.up_proj.weight", {c.hidden_dim, c.dim}, w.w3(l)});
            tensors.push_back({p + "mlp.down_proj.weight", {c.dim, c.hidden_dim}, w.w2(l)});
        }
        std::string header = "{";
        std::size_t offset = 0;
        for (const auto& t : tensors) {
            std::size_t n = 1;
            std::string dims;
            for (std::size_t d : t.shape) n *= d, dims += (dims.empty() ? "" : ",") + std::to_string(d);
            header += (offset ? "," : "") + std::string("\"") + t.name + "\":{\"dtype\":\"BF16\",\"shape\":[" + dims +
                      "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + 2 * n) + "]}";
            offset += 2 * n;
        }
        header += "}";
        while (header.size() % 8) header += ' ';
        fs::create_directories(path);
        std::ofstream out(path / "model.safetensors", std::ios::binary);
        const std::uint64_t n = header.size();
        out.write(reinterpret_cast<const char*>(&n), 8);
        out << header;
        for (const auto& t : tensors) {
            std::size_t count = 1;
            for (std::size_t d : t.shape) count *= d;
            std::vector<std::uint16_t> bf16(count);
            for (std::size_t i = 0; i < count; ++i) bf16[i] = quant::f32_to_bf16(t.data[i]);
            out.write(reinterpret_cast<const char*>(bf16.data()), static_cast<std::streamsize>(2 * count));
        }
        std::ofstream(path / "config.json")
            << "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": " << c.dim
            << ", \"intermediate_size\": " << c.hidden_dim << ", \"num_hidden_layers\": " << c.n_layers
            << ", \"num_attention_heads\": " << c.n_heads << ", \"num_key_value_heads\": " << c.n_kv_heads
            << ", \"vocab_size\": " << c.vocab_size << ", \"max_position_embeddings\": 1024, \"rms_norm_eps\": 1e-5,"
            << " \"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\"}";
    }
    ~folder() {
        std::error_code ignored;
        fs::remove_all(path, ignored);
    }
};

// The folder as stored (bf16) or converted to a Q8_0 GGUF file, built once per program.
std::shared_ptr<const transformer<float>> model_for(const kvbench::shape& s, weight_type type) {
    static std::map<std::string, std::unique_ptr<folder>> folders;
    static std::map<std::string, std::shared_ptr<const transformer<float>>> models;
    static std::map<std::string, std::vector<std::byte>> files;
    auto& f = folders[s.name];
    if (!f) f = std::make_unique<folder>(s);
    auto& m = models[s.name + "/" + std::string(to_string(type))];
    if (m) return m;
    if (type == weight_type::bf16) {
        m = std::make_shared<const transformer<float>>(load_hf_model(f->path));
    } else {
        const hf_config config = read_hf_config(f->path / "config.json");
        const hf_weight_files weights = hf_weight_files::open(f->path);
        auto& bytes = files[s.name];
        bytes = gguf_from_hf(config, hf_stored_weights(config, weights), {.type = type, .threads = 2}).file.to_bytes();
        m = std::make_shared<const transformer<float>>(load_gguf_model(gguf_file::from_memory(bytes)));
    }
    return m;
}

void decode(benchmark::State& state, const kvbench::shape& s, weight_type type, std::size_t threads) {
    const auto model = model_for(s, type);
    const std::size_t vocab = model->config().vocab_size;
    decode_context<float> ctx(*model, {.threads = threads, .max_rows_per_pass = 16});
    auto cache = model->make_cache({.capacity_tokens = 256});
    const seq_id seq = cache.create();
    std::vector<float> logits(vocab);
    ctx.forward(std::vector{sequence_tokens{seq, kvbench::tokens(16, vocab)}}, cache, logits);
    ctx.reserve(144);
    std::vector<token_id> next = {3};
    const std::vector<sequence_tokens> batch = {{seq, next}};
    for (auto _ : state) {
        ctx.forward(batch, cache, logits);
        next[0] = static_cast<token_id>((next[0] * 31 + 7) % vocab);
        if (cache.length(seq) == 144) cache.truncate(seq, 16);
        benchmark::DoNotOptimize(logits.data());
    }
    state.SetItemsProcessed(state.iterations());  // tokens
    state.counters["threads"] = static_cast<double>(threads);
    state.counters["weight_MB_per_token"] = static_cast<double>(model->weights().bytes_per_token()) / 1e6;
}

void register_all() {
    const std::size_t cpus = std::max(1u, std::thread::hardware_concurrency());
    for (const kvbench::shape& s : kvbench::shapes()) {
        if (s.name == "15M") continue;
        for (const weight_type type : {weight_type::bf16, weight_type::q8_0})
            for (std::size_t threads = 1; threads <= cpus; threads *= 2)
                benchmark::RegisterBenchmark(("hf_folder/decode/" + s.name + "/" + std::string(to_string(type)) +
                                              "/threads:" + std::to_string(threads))
                                                 .c_str(),
                                             [&s, type, threads](benchmark::State& st) { decode(st, s, type, threads); })
                    ->Unit(benchmark::kMillisecond)
                    ->UseRealTime();
    }
}

}  // namespace

int main(int argc, char** argv) {
    register_all();
    return kvbench::run_benchmarks(argc, argv);
}
