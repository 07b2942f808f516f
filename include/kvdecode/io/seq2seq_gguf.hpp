#pragma once
// Encoder-decoder models in GGUF: general.architecture "encdec", a layout of
// kvdecode's own (llama.cpp has no such architecture), documented in
// docs/ARCHITECTURE.md ("Encoder-decoder models"). Keys under "encdec.":
//   embedding_length, feed_forward_length, attention.head_count, attention.head_count_kv,
//   attention.layer_norm_rms_epsilon, rope.freq_base (optional, 10000),
//   encoder.block_count, encoder.context_length (source positions), and either
//   encoder.input_length (vector sources) or encoder.vocab_size (token sources),
//   decoder.block_count, context_length (target positions), vocab_size;
//   optionally patch_size, image_height, digit_width (how an image becomes vectors).
// Tensors (ggml shapes [in, out]; every supported type, dequantised to float here):
//   enc.input.weight [input_length, dim] + enc.input.bias [dim], or enc.token_embd.weight;
//   enc.blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate, ffn_up,
//   ffn_down}.weight; enc.output_norm.weight;
//   dec.token_embd.weight; dec.blk.N.{the same, and cross_norm, cross_q, cross_k, cross_v,
//   cross_output}.weight; dec.output_norm.weight; dec.output.weight.
// Every shape is checked against the metadata and every tensor must be used; errors
// name the file and the key or tensor.

#include <cstddef>
#include <filesystem>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "kvdecode/core/seq2seq_config.hpp"
#include "kvdecode/io/gguf.hpp"
#include "kvdecode/io/gguf_model.hpp"
#include "kvdecode/io/gguf_writer.hpp"
#include "kvdecode/io/image_patches.hpp"
#include "kvdecode/model/seq2seq_weights.hpp"
#include "kvdecode/quant/weight_matrix.hpp"

namespace kvdecode {

struct seq2seq_gguf {
    seq2seq_weights<float> weights;
    std::vector<std::string> tokens;  // target vocabulary, by id
    gguf_token_ids ids;               // BOS, EOS
    std::optional<image_patch_layout> patches;
};

namespace detail {

// f(name, ggml shape, where its values go) for every tensor of an encoder-decoder, in
// file order: the one list of the layout, which the reader checks and fills and the
// writer writes. With w null, the destinations are empty.
template <class F>
void for_each_seq2seq_tensor(const seq2seq_config& c, seq2seq_weights<float>* w, F&& f) {
    const model_config& d = c.decoder;
    auto to = [&](auto&& get, std::size_t n) { return w ? std::span<float>(get(), n) : std::span<float>(); };
    if (c.vector_sources()) {
        f("enc.input.weight", {c.input_dim, d.dim}, to([&] { return w->input_weight().data(); }, d.dim * c.input_dim));
        f("enc.input.bias", {d.dim}, to([&] { return w->input_bias().data(); }, d.dim));
    } else {
        f("enc.token_embd.weight", {d.dim, c.source_vocab_size},
          to([&] { return w->encoder().token_embedding().data(); }, c.source_vocab_size * d.dim));
    }
    auto stack = [&](const std::string& prefix, auto&& stack_of, std::size_t layers) {
        for (std::size_t l = 0; l < layers; ++l) {
            const std::string p = prefix + "blk." + std::to_string(l) + ".";
            auto part = [&](const char* name, std::vector<std::uint64_t> shape, auto member) {
                f(p + name, shape, to([&] { return (stack_of().*member)(l).data(); }, shape[0] * (shape.size() > 1 ? shape[1] : 1)));
            };
            using W = transformer_weights<float>;
            using Part = std::span<float> (W::*)(std::size_t) noexcept;
            part("attn_norm.weight", {d.dim}, static_cast<Part>(&W::rms_att));
            part("attn_q.weight", {d.dim, d.q_dim()}, static_cast<Part>(&W::wq));
            part("attn_k.weight", {d.dim, d.kv_dim()}, static_cast<Part>(&W::wk));
            part("attn_v.weight", {d.dim, d.kv_dim()}, static_cast<Part>(&W::wv));
            part("attn_output.weight", {d.q_dim(), d.dim}, static_cast<Part>(&W::wo));
            part("ffn_norm.weight", {d.dim}, static_cast<Part>(&W::rms_ffn));
            part("ffn_gate.weight", {d.dim, d.hidden_dim}, static_cast<Part>(&W::w1));
            part("ffn_up.weight", {d.dim, d.hidden_dim}, static_cast<Part>(&W::w3));
            part("ffn_down.weight", {d.hidden_dim, d.dim}, static_cast<Part>(&W::w2));
            if (prefix == "dec.") {
                auto cross = [&](const char* name, std::vector<std::uint64_t> shape, std::vector<float> cross_attention_weights<float>::*m) {
                    f(p + name, shape, to([&] { return (w->cross(l).*m).data(); }, shape[0] * (shape.size() > 1 ? shape[1] : 1)));
                };
                using X = cross_attention_weights<float>;
                cross("cross_norm.weight", {d.dim}, &X::norm);
                cross("cross_q.weight", {d.dim, d.q_dim()}, &X::wq);
                cross("cross_k.weight", {d.dim, d.kv_dim()}, &X::wk);
                cross("cross_v.weight", {d.dim, d.kv_dim()}, &X::wv);
                cross("cross_output.weight", {d.q_dim(), d.dim}, &X::wo);
            }
        }
    };
    stack("enc.", [&]() -> transformer_weights<float>& { return w->encoder(); }, c.encoder_layers);
    f("enc.output_norm.weight", {d.dim}, to([&] { return w->encoder().rms_final().data(); }, d.dim));
    f("dec.token_embd.weight", {d.dim, d.vocab_size}, to([&] { return w->decoder().token_embedding().data(); }, d.vocab_size * d.dim));
    stack("dec.", [&]() -> transformer_weights<float>& { return w->decoder(); }, d.n_layers);
    f("dec.output_norm.weight", {d.dim}, to([&] { return w->decoder().rms_final().data(); }, d.dim));
    f("dec.output.weight", {d.dim, d.vocab_size}, to([&] { return w->decoder().separate_classifier().data(); }, d.vocab_size * d.dim));
}

class seq2seq_gguf_reader {
public:
    explicit seq2seq_gguf_reader(const gguf_file& file) : file_(file) {}

    seq2seq_gguf read() {
        const std::string arch = file_.string("general.architecture");
        if (arch != "encdec") fail("key 'general.architecture'", "is '" + arch + "'; an encoder-decoder file has 'encdec'");
        seq2seq_config c;
        c.decoder.dim = count("embedding_length");
        c.decoder.hidden_dim = count("feed_forward_length");
        c.decoder.n_heads = count("attention.head_count");
        c.decoder.n_kv_heads = count("attention.head_count_kv");
        c.decoder.norm_eps = file_.real("encdec.attention.layer_norm_rms_epsilon");
        c.decoder.rope_theta = file_.find_real("encdec.rope.freq_base").value_or(10000.0);
        c.decoder.n_layers = count("decoder.block_count");
        c.decoder.seq_len = count("context_length");
        c.decoder.vocab_size = count("vocab_size");
        c.decoder.shared_classifier = false;
        c.encoder_layers = count("encoder.block_count");
        c.max_source_length = count("encoder.context_length");
        if (file_.has("encdec.encoder.input_length")) c.input_dim = count("encoder.input_length");
        if (file_.has("encdec.encoder.vocab_size")) c.source_vocab_size = count("encoder.vocab_size");
        try {
            c = validated(c);
        } catch (const std::invalid_argument& e) {
            fail("metadata", std::string(e.what()).substr(std::string_view("kvdecode: ").size()));
        }

        // Every tensor's name, shape and type checked first: the sizes the metadata
        // claims are then those of data inside the file, and only then allocated.
        for_each_seq2seq_tensor(c, nullptr, [&](const std::string& name, const std::vector<std::uint64_t>& shape, std::span<float>) {
            check(name, shape);
        });
        seq2seq_gguf out{seq2seq_weights<float>(c), {}, {}, {}};
        for_each_seq2seq_tensor(c, &out.weights, [&](const std::string& name, const std::vector<std::uint64_t>& shape, std::span<float> to) {
            fill(check(name, shape), to);
        });
        const model_config& d = c.decoder;
        for (const gguf_tensor_info& t : file_.tensors())
            if (!used_.contains(t.name)) fail("tensor '" + t.name + "'", "is not a tensor of an encdec model");

        if (file_.has("tokenizer.ggml.tokens")) {
            out.tokens = file_.strings("tokenizer.ggml.tokens");
            if (out.tokens.size() != d.vocab_size)
                fail("key 'tokenizer.ggml.tokens'", "has " + std::to_string(out.tokens.size()) + " tokens, but vocab_size is " +
                                                        std::to_string(d.vocab_size));
        }
        out.ids = gguf_model_reader(file_).token_ids(d.vocab_size);
        if (file_.has("encdec.patch_size")) {
            out.patches = image_patch_layout{count("patch_size"), count("image_height"), count("digit_width")};
            const image_patch_layout& p = *out.patches;
            if (p.image_height % p.patch_size || p.cell_width % p.patch_size || p.patch_size * p.patch_size != c.input_dim)
                fail("key 'encdec.patch_size'", "is " + std::to_string(p.patch_size) + ": patches of it must tile the " +
                                                    std::to_string(p.image_height) + "-pixel height and " +
                                                    std::to_string(p.cell_width) + "-pixel cells and hold input_length values");
        }
        return out;
    }

private:
    [[noreturn]] void fail(const std::string& field, const std::string& problem) const {
        throw gguf_error(file_.name(), field, problem);
    }

    std::size_t count(const std::string& suffix) const {
        const std::string k = "encdec." + suffix;
        const auto v = file_.find_uint(k);
        if (!v) fail("key '" + k + "'", "is missing");
        if (*v == 0 || *v > (std::uint64_t{1} << 32)) fail("key '" + k + "'", "is " + std::to_string(*v) + "; expected 1 to 2^32");
        return static_cast<std::size_t>(*v);
    }

    const gguf_tensor_info& check(const std::string& name, const std::vector<std::uint64_t>& shape) {
        const gguf_tensor_info& t = file_.tensor(name);
        if (t.shape != shape)
            fail("tensor '" + name + "'", "expected shape " + shape_string(shape) + ", found " + shape_string(t.shape));
        if (!weight_type_of(t.type))
            fail("tensor '" + name + "'", "has type " + std::string(to_string(t.type)) + ", which kvdecode does not support");
        used_.insert(name);
        return t;
    }

    // A checked tensor, dequantised row by row into `to` (row-major, of its size).
    void fill(const gguf_tensor_info& t, std::span<float> to) const {
        const std::size_t cols = static_cast<std::size_t>(t.shape[0]);
        const std::size_t rows = t.shape.size() > 1 ? static_cast<std::size_t>(t.shape[1]) : 1;
        const weight_matrix<float> m(*weight_type_of(t.type), file_.data(t), rows, cols);
        for (std::size_t r = 0; r < rows; ++r) m.dequantize_row(r, to.data() + r * cols);
    }

    const gguf_file& file_;
    std::set<std::string, std::less<>> used_;
};

}  // namespace detail

// A writer holding an encoder-decoder's metadata and its weights as F32 tensors, in the
// layout read_seq2seq_gguf reads; add the vocabulary and any other keys, then write().
inline gguf_writer seq2seq_gguf_writer(const seq2seq_weights<float>& w) {
    const seq2seq_config& c = w.config();
    const model_config& d = c.decoder;
    gguf_writer out;
    auto u32 = [](std::size_t v) { return gguf_value(static_cast<std::uint32_t>(v)); };
    out.set("general.architecture", "encdec");
    out.set("encdec.embedding_length", u32(d.dim));
    out.set("encdec.feed_forward_length", u32(d.hidden_dim));
    out.set("encdec.attention.head_count", u32(d.n_heads));
    out.set("encdec.attention.head_count_kv", u32(d.n_kv_heads));
    out.set("encdec.attention.layer_norm_rms_epsilon", gguf_value(static_cast<float>(d.norm_eps)));
    out.set("encdec.rope.freq_base", gguf_value(static_cast<float>(d.rope_theta)));
    out.set("encdec.encoder.block_count", u32(c.encoder_layers));
    out.set("encdec.encoder.context_length", u32(c.max_source_length));
    if (c.vector_sources()) out.set("encdec.encoder.input_length", u32(c.input_dim));
    else out.set("encdec.encoder.vocab_size", u32(c.source_vocab_size));
    out.set("encdec.decoder.block_count", u32(d.n_layers));
    out.set("encdec.context_length", u32(d.seq_len));
    out.set("encdec.vocab_size", u32(d.vocab_size));
    // The reader's list of tensors; the spans are only read (add_tensor copies them).
    detail::for_each_seq2seq_tensor(c, const_cast<seq2seq_weights<float>*>(&w),
                                    [&](const std::string& name, const std::vector<std::uint64_t>& shape, std::span<float> values) {
                                        out.add_tensor(name, shape, gguf_type::f32, std::as_bytes(values));
                                    });
    return out;
}

inline seq2seq_gguf read_seq2seq_gguf(const gguf_file& file) { return detail::seq2seq_gguf_reader(file).read(); }
inline seq2seq_gguf read_seq2seq_gguf(const std::filesystem::path& path) { return read_seq2seq_gguf(gguf_file::open(path)); }

}  // namespace kvdecode
