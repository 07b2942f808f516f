#pragma once
// A transformer from a Hugging Face model folder: config.json (io/hf_config.hpp) and
// the weights in model.safetensors, or in shards named by model.safetensors.index.json
// ({"weight_map": {tensor name: shard file name}}). Matrices stay in their stored type
// (F32, F16 or BF16; f16 and bf16 are used as such, not widened), norm gains and biases
// become float.
//
// Tensors, by transformers' names (PyTorch shapes, outermost first):
//   model.embed_tokens.weight [vocab, dim]          model.norm.weight [dim]
//   lm_head.weight [vocab, dim]                     (absent when tie_word_embeddings)
//   model.layers.N.input_layernorm.weight [dim]     model.layers.N.post_attention_layernorm.weight [dim]
//   model.layers.N.self_attn.q_proj.weight [q_dim, dim]    k_proj / v_proj [kv_dim, dim]
//   model.layers.N.self_attn.{q,k,v}_proj.bias      (Qwen2)
//   model.layers.N.self_attn.o_proj.weight [dim, q_dim]
//   model.layers.N.mlp.gate_proj / up_proj [hidden, dim]   mlp.down_proj [dim, hidden]
// As in transformers: with tie_word_embeddings an lm_head.weight in the file is not
// used (the embeddings are the classifier), and rotary_emb.inv_freq buffers that old
// checkpoints carry are recomputed from the config. Any other tensor the model does
// not use is an error, as is a missing one, another shape or an unsupported dtype:
// each names the file and the tensor. Shard names must be plain file names in the
// folder; every tensor of the index must be in its shard and every shard's tensor in
// the index.

#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kvdecode/core/error.hpp"
#include "kvdecode/io/detail/json_file.hpp"
#include "kvdecode/io/hf_config.hpp"
#include "kvdecode/io/safetensors.hpp"
#include "kvdecode/model/packed_weights.hpp"
#include "kvdecode/model/stored_weights.hpp"
#include "kvdecode/model/transformer.hpp"
#include "kvdecode/quant/weight_matrix.hpp"
#include "kvdecode/quant/weight_type.hpp"

namespace kvdecode {

// The safetensors files of a folder, and which of them holds each tensor.
class hf_weight_files {
public:
    static constexpr std::string_view single_file = "model.safetensors";
    static constexpr std::string_view index_file = "model.safetensors.index.json";

    // Opens model.safetensors.index.json and its shards where the index is there, else
    // model.safetensors. Throws file_format_error naming what is missing or wrong.
    static hf_weight_files open(const std::filesystem::path& folder) {
        hf_weight_files w;
        const auto index = folder / index_file;
        if (std::filesystem::exists(index)) {
            w.read_index(index, folder);
        } else if (std::filesystem::exists(folder / single_file)) {
            w.files_.push_back(safetensors_file::open(folder / single_file));
            for (const auto& t : w.files_[0].tensors()) w.where_.emplace(t.name, 0);
        } else {
            throw file_format_error(folder.string(), "weights",
                                    "expected " + std::string(single_file) + " or " + std::string(index_file) +
                                        " in the folder, found neither" +
                                        (std::filesystem::exists(folder / "pytorch_model.bin")
                                             ? " (pytorch_model.bin is a Python pickle, which kvdecode does not read: "
                                               "save the model with safetensors)"
                                             : ""));
        }
        return w;
    }

    // From files already open (tests, fuzzing): each tensor in exactly one of them.
    static hf_weight_files from_files(std::vector<safetensors_file> files) {
        hf_weight_files w;
        w.files_ = std::move(files);
        for (std::size_t i = 0; i < w.files_.size(); ++i)
            for (const auto& t : w.files_[i].tensors())
                if (!w.where_.emplace(t.name, i).second)
                    throw file_format_error(w.files_[i].name(), "tensor '" + t.name + "'", "is also in " +
                                                                                       w.files_[w.where_[t.name]].name());
        return w;
    }

    const std::vector<safetensors_file>& files() const noexcept { return files_; }
    // The tensor and the file it is in, or nullptr.
    const safetensors_tensor* find(std::string_view name, const safetensors_file** file = nullptr) const {
        const auto it = where_.find(name);
        if (it == where_.end()) return nullptr;
        if (file) *file = &files_[it->second];
        return files_[it->second].find(name);
    }
    std::vector<std::string> names() const {
        std::vector<std::string> out;
        for (const auto& [name, file] : where_) out.push_back(name);
        return out;
    }
    // Keeps every mapping alive.
    std::shared_ptr<const void> owner() const {
        auto owners = std::make_shared<std::vector<std::shared_ptr<const void>>>();
        for (const auto& f : files_) owners->push_back(f.owner());
        return owners;
    }

private:
    void read_index(const std::filesystem::path& index, const std::filesystem::path& folder) {
        const detail::json_file f = detail::json_file::read(index);
        const auto* map = f.find("weight_map");
        if (!map || !map->is_object()) f.fail("key 'weight_map'", "expected an object of tensor name to file name");
        std::map<std::string, std::size_t, std::less<>> file_index;
        for (const auto& [tensor, file] : map->items()) {
            if (!file.is_string()) f.fail("weight_map '" + tensor + "'", "is " + file.dump() + "; expected a file name");
            const std::string name = file.get<std::string>();
            if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
                name.find('\\') != std::string::npos)
                f.fail("weight_map '" + tensor + "'", "names '" + name + "'; expected a file name in the model's folder");
            auto [it, added] = file_index.emplace(name, files_.size());
            if (added) files_.push_back(safetensors_file::open(folder / name));
            where_.emplace(tensor, it->second);
        }
        for (const auto& [tensor, i] : where_)
            if (!files_[i].find(tensor))
                f.fail("weight_map '" + tensor + "'", "names " + files_[i].name() + ", which has no such tensor");
        for (const auto& file : files_)
            for (const auto& t : file.tensors())
                if (where_.find(t.name) == where_.end())
                    throw file_format_error(file.name(), "tensor '" + t.name + "'", "is not in " + index.string() + "'s weight_map");
    }

    std::vector<safetensors_file> files_;
    std::map<std::string, std::size_t, std::less<>> where_;
};

// A Hugging Face model folder's config, generation defaults (where the folder has
// generation_config.json) and weights, as files.
struct hf_folder {
    std::filesystem::path path;
    hf_config config;
    std::optional<hf_generation_config> generation;
};

namespace detail {

class hf_model_reader {
public:
    hf_model_reader(const hf_config& config, const hf_weight_files& files) : config_(config), files_(files) {}

    stored_weights read() {
        stored_weights s;
        s.config = config_.model;
        const model_config& c = s.config;
        s.owner = files_.owner();
        s.token_embedding = matrix("model.embed_tokens.weight", c.vocab_size, c.dim);
        s.layers.resize(c.n_layers);
        for (std::size_t l = 0; l < c.n_layers; ++l) {
            const std::string p = "model.layers." + std::to_string(l) + ".";
            stored_layer& L = s.layers[l];
            L.attn_norm = vector(p + "input_layernorm.weight", c.dim);
            L.wq = matrix(p + "self_attn.q_proj.weight", c.q_dim(), c.dim);
            L.wk = matrix(p + "self_attn.k_proj.weight", c.kv_dim(), c.dim);
            L.wv = matrix(p + "self_attn.v_proj.weight", c.kv_dim(), c.dim);
            if (c.qkv_bias) {
                L.bq = vector(p + "self_attn.q_proj.bias", c.q_dim());
                L.bk = vector(p + "self_attn.k_proj.bias", c.kv_dim());
                L.bv = vector(p + "self_attn.v_proj.bias", c.kv_dim());
            }
            L.wo = matrix(p + "self_attn.o_proj.weight", c.dim, c.q_dim());
            L.ffn_norm = vector(p + "post_attention_layernorm.weight", c.dim);
            L.w1 = matrix(p + "mlp.gate_proj.weight", c.hidden_dim, c.dim);
            L.w2 = matrix(p + "mlp.down_proj.weight", c.dim, c.hidden_dim);
            L.w3 = matrix(p + "mlp.up_proj.weight", c.hidden_dim, c.dim);
            used_.insert(p + "self_attn.rotary_emb.inv_freq");
        }
        s.output_norm = vector("model.norm.weight", c.dim);
        if (c.shared_classifier) used_.insert("lm_head.weight");  // tied: transformers uses the embeddings
        else s.output = matrix("lm_head.weight", c.vocab_size, c.dim);
        for (const std::string& name : files_.names())
            if (!used_.contains(name)) {
                const safetensors_file* file = nullptr;
                files_.find(name, &file);
                throw file_format_error(file->name(), "tensor '" + name + "'",
                                        "is not a tensor of kvdecode's " + config_.architecture +
                                            " model; it would be ignored");
            }
        return s;
    }

private:
    const safetensors_tensor& tensor(const std::string& name, std::vector<std::uint64_t> shape, const safetensors_file*& file) {
        const safetensors_tensor* t = files_.find(name, &file);
        if (!t) {
            const auto& all = files_.files();
            throw file_format_error(all.size() == 1 ? all[0].name() : std::string("the model's safetensors files"),
                                    "tensor '" + name + "'", "is missing");
        }
        if (t->shape != shape)
            throw file_format_error(file->name(), "tensor '" + name + "'",
                                    "has shape " + shape_string(t->shape) + "; the config needs " + shape_string(shape));
        used_.insert(name);
        return *t;
    }

    static std::string shape_string(const std::vector<std::uint64_t>& shape) {
        std::string s = "[";
        for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
        return s + "]";
    }

    static weight_type type_of(const safetensors_tensor& t, const safetensors_file& file) {
        switch (t.dtype) {
            case safetensors_dtype::f32: return weight_type::f32;
            case safetensors_dtype::f16: return weight_type::f16;
            case safetensors_dtype::bf16: return weight_type::bf16;
            default:
                throw file_format_error(file.name(), "tensor '" + t.name + "'",
                                        "has dtype " + std::string(to_string(t.dtype)) +
                                            "; kvdecode reads F32, F16 and BF16 weights (quantize with kvdecode-quantize)");
        }
    }

    stored_matrix matrix(const std::string& name, std::size_t out_dim, std::size_t in_dim) {
        const safetensors_file* file = nullptr;
        const safetensors_tensor& t = tensor(name, {out_dim, in_dim}, file);
        return {type_of(t, *file), t.data, out_dim, in_dim};
    }

    std::vector<float> vector(const std::string& name, std::size_t n) {
        const safetensors_file* file = nullptr;
        const safetensors_tensor& t = tensor(name, {n}, file);
        std::vector<float> out(n);
        weight_matrix<float>(type_of(t, *file), t.data, 1, n).dequantize_row(0, out.data());
        return out;
    }

    const hf_config& config_;
    const hf_weight_files& files_;
    std::set<std::string, std::less<>> used_;
};

}  // namespace detail

// config.json and, where present, generation_config.json.
inline hf_folder read_hf_folder(const std::filesystem::path& folder) {
    if (!std::filesystem::is_directory(folder) || !std::filesystem::exists(folder / "config.json"))
        throw file_format_error(folder.string(), "folder",
                                std::string("expected a Hugging Face model folder (config.json, *.safetensors), found ") +
                                    (std::filesystem::is_directory(folder) ? "a folder without config.json" : "no folder"));
    hf_folder f{folder, read_hf_config(folder / "config.json"), std::nullopt};
    if (std::filesystem::exists(folder / "generation_config.json"))
        f.generation = read_hf_generation_config(folder / "generation_config.json", f.config.model.vocab_size);
    return f;
}

// Every weight as the files store them, spans into the mappings (which s.owner keeps).
inline stored_weights hf_stored_weights(const hf_config& config, const hf_weight_files& files) {
    return detail::hf_model_reader(config, files).read();
}

inline std::shared_ptr<const packed_weights<float>> load_hf_weights(const std::filesystem::path& folder) {
    const hf_config config = read_hf_config(folder / "config.json");
    return std::make_shared<const packed_weights<float>>(hf_stored_weights(config, hf_weight_files::open(folder)));
}

inline transformer<float> load_hf_model(const std::filesystem::path& folder) {
    return transformer<float>(load_hf_weights(folder));
}

}  // namespace kvdecode
