#pragma once
// Conversion to GGUF (what kvdecode-quantize does): a llama2.c checkpoint with its
// tokenizer, or a GGUF file, becomes a gguf_writer holding a GGUF v3 file of one weight
// type, ready to write().
//
// From llama2.c, the file is what llama.cpp's convert-llama2c-to-ggml writes (the
// fixtures' kjv-f32.gguf came from it; tests/io/gguf_convert_test.cpp compares every
// key and tensor): the same metadata keys, values and order, tensors named, shaped and
// ordered as there (token_embd, output_norm, output, then per layer attn_q, attn_k,
// attn_v, attn_output, attn_norm, ffn_gate, ffn_down, ffn_up, ffn_norm), the classifier
// written as output.weight even when shared, wq and wk as they are (llama.cpp's `llama`
// architecture rotates adjacent pairs, as llama2.c does). The vocabulary as the
// converter reads a llama2.c tokenizer: ids 0, 1, 2 become "<unk>" (unknown), "<s>" and
// "</s>" (control), an empty piece is control, "<0xXX>" pieces are byte tokens, spaces
// are written U+2581, scores copied. Where this differs from the converter, on purpose:
//   - llama.rope.dimension_count is head_dim (the converter caps it at 64, which would
//     make llama.cpp rotate only part of a wider head; llama2.c rotates all of it);
//   - llama.rope.freq_base (10000), general.file_type and general.quantization_version
//     are written (the converter leaves them out: llama.cpp's defaults are the same);
//   - general.name is options.name ("llama" by default, the converter's constant).
// Without a tokenizer no vocabulary is written (llama.vocab_size says its size); such
// a file loads as weights only.
//
// From GGUF, metadata is copied in its order (general.file_type and
// general.quantization_version set, general.name where options.name is given) and
// every tensor in its order: a tensor already of its target type is copied as it is,
// any other is dequantised to float32 (every type kvdecode reads) and quantised.
//
// Types: every matrix (a tensor with more than one row) becomes options.type
// (output.weight: options.output_type where given); vectors (norm gains, biases, RoPE
// factors) stay float32. A row must hold whole blocks of the type: where it does not,
// the tensor falls back as llama-quantize does (q4_k -> q5_0, q5_k -> q5_1,
// q6_k -> q8_0; q2_k and q3_k -> q4_0, of IQ4_NL's size, where llama.cpp uses IQ4_NL,
// which kvdecode does not read), then to f16 when even the fallback's block of 32 does
// not fit; each fallback adds one line to the result's notes.
// Quantisation is the reference quantisers' (quant/), bit-exact with llama.cpp's
// quantize_row_*_ref, which llama-quantize uses without an importance matrix.
//
// Errors throw before anything is written: std::invalid_argument for a value that is
// not finite or a block the type cannot hold (naming the tensor and row), a tensor of
// a type kvdecode cannot read, or a model this writer cannot express.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kvdecode/io/gguf.hpp"
#include "kvdecode/io/gguf_model.hpp"
#include "kvdecode/io/gguf_writer.hpp"
#include "kvdecode/model/weights.hpp"
#include "kvdecode/quant/half.hpp"
#include "kvdecode/quant/k_quants.hpp"
#include "kvdecode/quant/q4_q5.hpp"
#include "kvdecode/quant/q8_0.hpp"
#include "kvdecode/quant/weight_type.hpp"
#include "kvdecode/tokenizer/sentencepiece.hpp"

namespace kvdecode {

// What the conversion writes.
struct gguf_convert_options {
    weight_type type = weight_type::f32;      // of every matrix; vectors stay f32
    std::optional<weight_type> output_type;   // of output.weight (llama-quantize's --output-tensor-type); default: type
    std::optional<std::string> name;          // general.name; default: "llama" (llama2.c), the file's own (GGUF)
    std::size_t threads = 1;                  // rows quantised in parallel; the bytes do not depend on it
};

// The file to write and what happened on the way.
struct gguf_conversion {
    gguf_writer file;
    std::vector<std::string> notes;  // one line per tensor that fell back to another type
};

// The GGUF type of a weight type (same name, same block layout).
inline gguf_type gguf_type_of(weight_type t) {
    switch (t) {
        case weight_type::f32: return gguf_type::f32;
        case weight_type::f16: return gguf_type::f16;
        case weight_type::bf16: return gguf_type::bf16;
        case weight_type::q8_0: return gguf_type::q8_0;
        case weight_type::q4_0: return gguf_type::q4_0;
        case weight_type::q4_1: return gguf_type::q4_1;
        case weight_type::q5_0: return gguf_type::q5_0;
        case weight_type::q5_1: return gguf_type::q5_1;
        case weight_type::q2_k: return gguf_type::q2_k;
        case weight_type::q3_k: return gguf_type::q3_k;
        case weight_type::q4_k: return gguf_type::q4_k;
        case weight_type::q5_k: return gguf_type::q5_k;
        case weight_type::q6_k: return gguf_type::q6_k;
    }
    throw std::invalid_argument("kvdecode: weight type " + std::to_string(static_cast<int>(t)) + " has no GGUF type");
}

// llama.cpp's general.file_type (enum llama_ftype) for a file mostly of this type. The
// K-types are written whole (no llama-quantize recipe), so they take the _S numbers.
constexpr std::uint32_t llama_file_type(weight_type t) noexcept {
    switch (t) {
        case weight_type::f32: return 0;    // ALL_F32
        case weight_type::f16: return 1;    // MOSTLY_F16
        case weight_type::q4_0: return 2;   // MOSTLY_Q4_0
        case weight_type::q4_1: return 3;   // MOSTLY_Q4_1
        case weight_type::q8_0: return 7;   // MOSTLY_Q8_0
        case weight_type::q5_0: return 8;   // MOSTLY_Q5_0
        case weight_type::q5_1: return 9;   // MOSTLY_Q5_1
        case weight_type::q2_k: return 10;  // MOSTLY_Q2_K
        case weight_type::q3_k: return 11;  // MOSTLY_Q3_K_S
        case weight_type::q4_k: return 14;  // MOSTLY_Q4_K_S
        case weight_type::q5_k: return 16;  // MOSTLY_Q5_K_S
        case weight_type::q6_k: return 18;  // MOSTLY_Q6_K
        case weight_type::bf16: return 32;  // MOSTLY_BF16
    }
    return 0;
}

// The type a matrix with rows of row_length values is stored as when `wanted` is asked
// for (see the top of this file), and the note saying so when it differs.
struct gguf_type_choice {
    weight_type type;
    std::string note;  // empty when type == wanted
};

inline gguf_type_choice choose_tensor_type(weight_type wanted, std::size_t row_length, const std::string& tensor) {
    if (row_length % block_values(wanted) == 0) return {wanted, {}};
    weight_type fallback = weight_type::f16;
    switch (wanted) {
        case weight_type::q4_k: fallback = weight_type::q5_0; break;
        case weight_type::q5_k: fallback = weight_type::q5_1; break;
        case weight_type::q6_k: fallback = weight_type::q8_0; break;
        case weight_type::q2_k:
        case weight_type::q3_k: fallback = weight_type::q4_0; break;
        default: break;
    }
    if (row_length % block_values(fallback) != 0) fallback = weight_type::f16;
    return {fallback, "tensor " + tensor + ": row length " + std::to_string(row_length) + " is not a multiple of " +
                          std::to_string(block_values(wanted)) + "; " + std::string(to_string(wanted)) + " falls back to " +
                          std::string(to_string(fallback))};
}

namespace detail {

// f(static_cast<Block*>(nullptr)) with the block struct of a block type.
template <class F>
void with_block_struct(weight_type t, F&& f) {
    switch (t) {
        case weight_type::q8_0: f(static_cast<quant::block_q8_0*>(nullptr)); return;
        case weight_type::q4_0: f(static_cast<quant::block_q4_0*>(nullptr)); return;
        case weight_type::q4_1: f(static_cast<quant::block_q4_1*>(nullptr)); return;
        case weight_type::q5_0: f(static_cast<quant::block_q5_0*>(nullptr)); return;
        case weight_type::q5_1: f(static_cast<quant::block_q5_1*>(nullptr)); return;
        case weight_type::q2_k: f(static_cast<quant::block_q2_k*>(nullptr)); return;
        case weight_type::q3_k: f(static_cast<quant::block_q3_k*>(nullptr)); return;
        case weight_type::q4_k: f(static_cast<quant::block_q4_k*>(nullptr)); return;
        case weight_type::q5_k: f(static_cast<quant::block_q5_k*>(nullptr)); return;
        case weight_type::q6_k: f(static_cast<quant::block_q6_k*>(nullptr)); return;
        default: return;
    }
}

inline void quantize_blocks(const float* x, quant::block_q8_0* y, std::size_t n) { quant::quantize_row_q8_0(x, y, n); }
inline void quantize_blocks(const float* x, quant::block_q4_0* y, std::size_t n) { quant::quantize_row_q4_0(x, y, n); }
inline void quantize_blocks(const float* x, quant::block_q4_1* y, std::size_t n) { quant::quantize_row_q4_1(x, y, n); }
inline void quantize_blocks(const float* x, quant::block_q5_0* y, std::size_t n) { quant::quantize_row_q5_0(x, y, n); }
inline void quantize_blocks(const float* x, quant::block_q5_1* y, std::size_t n) { quant::quantize_row_q5_1(x, y, n); }
inline void quantize_blocks(const float* x, quant::block_q2_k* y, std::size_t n) { quant::quantize_row_q2_k(x, y, n); }
inline void quantize_blocks(const float* x, quant::block_q3_k* y, std::size_t n) { quant::quantize_row_q3_k(x, y, n); }
inline void quantize_blocks(const float* x, quant::block_q4_k* y, std::size_t n) { quant::quantize_row_q4_k(x, y, n); }
inline void quantize_blocks(const float* x, quant::block_q5_k* y, std::size_t n) { quant::quantize_row_q5_k(x, y, n); }
inline void quantize_blocks(const float* x, quant::block_q6_k* y, std::size_t n) { quant::quantize_row_q6_k(x, y, n); }

inline void dequantize_blocks(const quant::block_q8_0* x, float* y, std::size_t n) { quant::dequantize_row_q8_0(x, y, n); }
inline void dequantize_blocks(const quant::block_q4_0* x, float* y, std::size_t n) { quant::dequantize_row_q4_0(x, y, n); }
inline void dequantize_blocks(const quant::block_q4_1* x, float* y, std::size_t n) { quant::dequantize_row_q4_1(x, y, n); }
inline void dequantize_blocks(const quant::block_q5_0* x, float* y, std::size_t n) { quant::dequantize_row_q5_0(x, y, n); }
inline void dequantize_blocks(const quant::block_q5_1* x, float* y, std::size_t n) { quant::dequantize_row_q5_1(x, y, n); }
inline void dequantize_blocks(const quant::block_q2_k* x, float* y, std::size_t n) { quant::dequantize_row_q2_k(x, y, n); }
inline void dequantize_blocks(const quant::block_q3_k* x, float* y, std::size_t n) { quant::dequantize_row_q3_k(x, y, n); }
inline void dequantize_blocks(const quant::block_q4_k* x, float* y, std::size_t n) { quant::dequantize_row_q4_k(x, y, n); }
inline void dequantize_blocks(const quant::block_q5_k* x, float* y, std::size_t n) { quant::dequantize_row_q5_k(x, y, n); }
inline void dequantize_blocks(const quant::block_q6_k* x, float* y, std::size_t n) { quant::dequantize_row_q6_k(x, y, n); }

}  // namespace detail

// One row of n values (a whole number of the type's blocks) into the type's GGUF
// layout at `out` (row_bytes(t, n) bytes, any alignment). Values are not checked.
inline void quantize_row(weight_type t, const float* x, std::byte* out, std::size_t n) {
    const std::size_t bytes = row_bytes(t, n);
    switch (t) {
        case weight_type::f32: std::memcpy(out, x, bytes); return;
        case weight_type::f16:
        case weight_type::bf16:
            for (std::size_t i = 0; i < n; ++i) {
                const std::uint16_t h = t == weight_type::f16 ? quant::f32_to_f16(x[i]) : quant::f32_to_bf16(x[i]);
                std::memcpy(out + 2 * i, &h, 2);
            }
            return;
        default: break;
    }
    detail::with_block_struct(t, [&]<class Block>(Block*) {
        std::vector<Block> blocks(n / block_values(t));  // the block structs' own alignment
        detail::quantize_blocks(x, blocks.data(), n);
        std::memcpy(out, blocks.data(), bytes);
    });
}

// One row of n values stored in the type's GGUF layout (any alignment) as float32.
inline void dequantize_row(weight_type t, const std::byte* in, float* y, std::size_t n) {
    const std::size_t bytes = row_bytes(t, n);
    switch (t) {
        case weight_type::f32: std::memcpy(y, in, bytes); return;
        case weight_type::f16:
        case weight_type::bf16:
            for (std::size_t i = 0; i < n; ++i) {
                std::uint16_t h;
                std::memcpy(&h, in + 2 * i, 2);
                y[i] = t == weight_type::f16 ? quant::f16_to_f32(h) : quant::bf16_to_f32(h);
            }
            return;
        default: break;
    }
    detail::with_block_struct(t, [&]<class Block>(Block*) {
        std::vector<Block> blocks(n / block_values(t));
        std::memcpy(blocks.data(), in, bytes);
        detail::dequantize_blocks(blocks.data(), y, n);
    });
}

namespace detail {

// A tensor's bytes owned by the writer.
struct owned_bytes {
    std::shared_ptr<std::vector<std::byte>> bytes;
    std::span<const std::byte> span() const { return *bytes; }
};

// rows x row_length floats (row r from row(r, buffer), which returns a pointer to its
// values) into `type`, rows split between threads. Every input value must be finite
// and every stored row must read back finite (a block scale beyond float16's range
// would not); the error names the tensor and the lowest bad row.
template <class RowSource>
owned_bytes quantize_tensor(const std::string& tensor, weight_type type, std::size_t rows, std::size_t row_length,
                            std::size_t threads, RowSource&& row) {
    const std::size_t stride = row_bytes(type, row_length);
    auto out = std::make_shared<std::vector<std::byte>>(rows * stride);
    struct failure {
        std::size_t row = SIZE_MAX;
        std::string what;
    };
    auto work = [&](std::size_t begin, std::size_t end, failure& f) {
        try {
            std::vector<float> source(row_length), back(row_length);
            for (std::size_t r = begin; r < end; ++r) {
                const float* x = row(r, source.data());
                for (std::size_t k = 0; k < row_length; ++k)
                    if (!std::isfinite(x[k])) {
                        f = {r, "row " + std::to_string(r) + ", column " + std::to_string(k) + " holds " +
                                    std::to_string(x[k]) + ", which is not finite"};
                        return;
                    }
                std::byte* y = out->data() + r * stride;
                quantize_row(type, x, y, row_length);
                dequantize_row(type, y, back.data(), row_length);
                for (std::size_t k = 0; k < row_length; ++k)
                    if (!std::isfinite(back[k])) {
                        f = {r, "row " + std::to_string(r) + " cannot be stored as " + std::string(to_string(type)) +
                                    ": column " + std::to_string(k) + " (" + std::to_string(x[k]) +
                                    ") or its block's scale is beyond float16's range"};
                        return;
                    }
            }
        } catch (const std::exception& e) {
            f = {begin, e.what()};
        }
    };
    const std::size_t n = std::clamp<std::size_t>(threads, 1, std::max<std::size_t>(rows / 16, 1));
    std::vector<failure> failures(n);
    if (n == 1) {
        work(0, rows, failures[0]);
    } else {
        std::vector<std::thread> pool;
        for (std::size_t i = 0; i < n; ++i) pool.emplace_back(work, rows * i / n, rows * (i + 1) / n, std::ref(failures[i]));
        for (auto& t : pool) t.join();
    }
    for (const failure& f : failures)  // in row order: the first failing chunk holds the lowest row
        if (!f.what.empty()) throw std::invalid_argument("kvdecode: gguf conversion: tensor " + tensor + ": " + f.what);
    return {std::move(out)};
}

// Adds a float32 tensor (ggml shape) as `type`, choosing the fallback; notes say so.
template <class RowSource>
void add_converted(gguf_conversion& c, const std::string& name, const std::vector<std::uint64_t>& shape, weight_type type,
                   std::size_t threads, RowSource&& row) {
    const auto row_length = static_cast<std::size_t>(shape[0]);
    std::size_t rows = 1;
    for (std::size_t i = 1; i < shape.size(); ++i) rows *= static_cast<std::size_t>(shape[i]);
    const gguf_type_choice choice = choose_tensor_type(type, row_length, name);
    if (!choice.note.empty()) c.notes.push_back(choice.note);
    owned_bytes data = quantize_tensor(name, choice.type, rows, row_length, threads, row);
    c.file.add_tensor(name, shape, gguf_type_of(choice.type), data.span(), data.bytes);
}

// A matrix has more than one row (ggml counts a [n, 1] tensor as 1-D too).
inline bool is_matrix(const std::vector<std::uint64_t>& shape) {
    for (std::size_t i = 1; i < shape.size(); ++i)
        if (shape[i] > 1) return true;
    return false;
}

inline weight_type target_type(const std::string& tensor, const std::vector<std::uint64_t>& shape,
                               const gguf_convert_options& o) {
    if (!is_matrix(shape)) return weight_type::f32;
    if (tensor == "output.weight" && o.output_type) return *o.output_type;
    return o.type;
}

inline void set_file_type(gguf_writer& w, const gguf_convert_options& o) {
    w.set("general.quantization_version", gguf_value(std::uint32_t{2}));  // ggml's GGML_QNT_VERSION
    w.set("general.file_type", gguf_value(llama_file_type(o.type)));
}

}  // namespace detail

// The vocabulary of a llama2.c tokenizer as llama.cpp's llama2.c converter writes it:
// tokenizer.ggml.{tokens, scores, token_type, model}, then (after general.*, as there)
// the special ids. Split in two so the keys keep the converter's order.
inline void set_llama2c_vocab_arrays(gguf_writer& w, const sentencepiece_tokenizer& tok) {
    const std::size_t n = tok.vocab_size();
    std::vector<std::string> pieces(n);
    std::vector<float> scores(n);
    std::vector<std::int32_t> types(n);
    const auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); };
    for (std::size_t i = 0; i < n; ++i) {
        const auto id = static_cast<token_id>(i);
        const std::string_view p = tok.piece(id);
        token_type type = token_type::normal;
        std::string text(p);
        if (i == 0) text = "<unk>", type = token_type::unknown;
        else if (i == 1) text = "<s>", type = token_type::control;
        else if (i == 2) text = "</s>", type = token_type::control;
        else if (p.empty()) type = token_type::control;
        else if (p.size() == 6 && p.substr(0, 3) == "<0x" && p[5] == '>' && hex(p[3]) && hex(p[4])) type = token_type::byte;
        std::string escaped;
        for (char ch : text) escaped += ch == ' ' ? std::string("\xe2\x96\x81") : std::string(1, ch);
        pieces[i] = std::move(escaped);
        scores[i] = tok.score(id);
        types[i] = static_cast<std::int32_t>(type);
    }
    w.set("tokenizer.ggml.tokens", std::move(pieces));
    w.set("tokenizer.ggml.scores", scores);
    w.set("tokenizer.ggml.token_type", types);
    w.set("tokenizer.ggml.model", "llama");
}

// A llama2.c model (transformer_weights read by read_llama2c_checkpoint) and, where
// given, its tokenizer (of the model's vocabulary size) as a GGUF file of options.type.
inline gguf_conversion gguf_from_llama2c(const transformer_weights<float>& w, const sentencepiece_tokenizer* vocab,
                                         const gguf_convert_options& o = {}) {
    const model_config& c = w.config();
    auto refuse = [](const std::string& why) {
        throw std::invalid_argument("kvdecode: gguf conversion: this model cannot be written as a llama2.c conversion: " + why);
    };
    if (c.rope != rope_layout::interleaved) refuse("its RoPE rotates halves, not adjacent pairs");
    if (c.qkv_bias) refuse("it has Q/K/V biases");
    if (!c.rope_freq_factors.empty() || c.rope_linear_scale != 1.0) refuse("it scales RoPE frequencies");
    if (c.head_dim * c.n_heads != c.dim) refuse("head_dim * n_heads is not dim");
    if (vocab && vocab->vocab_size() != c.vocab_size)
        refuse("the tokenizer has " + std::to_string(vocab->vocab_size()) + " pieces, the model " +
               std::to_string(c.vocab_size) + " tokens");

    gguf_conversion out;
    gguf_writer& f = out.file;
    auto u32 = [](std::size_t v) {
        if (v > UINT32_MAX) throw std::invalid_argument("kvdecode: gguf conversion: " + std::to_string(v) + " does not fit uint32");
        return gguf_value(static_cast<std::uint32_t>(v));
    };
    if (vocab) set_llama2c_vocab_arrays(f, *vocab);
    f.set("general.architecture", "llama");
    f.set("general.name", gguf_value(o.name.value_or("llama")));
    if (vocab) {
        f.set("tokenizer.ggml.unknown_token_id", u32(0));
        f.set("tokenizer.ggml.bos_token_id", u32(1));
        f.set("tokenizer.ggml.eos_token_id", u32(2));
        f.set("tokenizer.ggml.seperator_token_id", gguf_value(std::uint32_t{0xFFFFFFFF}));  // ggml's spelling; none
        f.set("tokenizer.ggml.padding_token_id", gguf_value(std::uint32_t{0xFFFFFFFF}));
    }
    f.set("llama.context_length", u32(c.seq_len));
    f.set("llama.embedding_length", u32(c.dim));
    f.set("llama.feed_forward_length", u32(c.hidden_dim));
    f.set("llama.attention.head_count", u32(c.n_heads));
    f.set("llama.attention.head_count_kv", u32(c.n_kv_heads));
    f.set("llama.block_count", u32(c.n_layers));
    f.set("llama.rope.dimension_count", u32(c.head_dim));
    f.set("llama.attention.layer_norm_rms_epsilon", gguf_value(static_cast<float>(c.norm_eps)));
    f.set("llama.rope.freq_base", gguf_value(static_cast<float>(c.rope_theta)));
    if (!vocab) f.set("llama.vocab_size", u32(c.vocab_size));
    detail::set_file_type(f, o);

    // A row-major (rows, row_length) float32 array as the GGUF tensor [row_length, rows].
    auto add = [&](const std::string& name, const float* data, std::size_t rows, std::size_t row_length) {
        std::vector<std::uint64_t> shape = {row_length};
        if (rows > 1) shape.push_back(rows);
        detail::add_converted(out, name, shape, detail::target_type(name, shape, o), o.threads,
                              [&](std::size_t r, float*) { return data + r * row_length; });
    };
    const std::size_t dim = c.dim, hidden = c.hidden_dim, kv = c.kv_dim();
    add("token_embd.weight", w.token_embedding(), c.vocab_size, dim);
    add("output_norm.weight", w.rms_final(), 1, dim);
    add("output.weight", w.classifier(), c.vocab_size, dim);
    for (std::size_t l = 0; l < c.n_layers; ++l) {
        const std::string b = "blk." + std::to_string(l) + ".";
        add(b + "attn_q.weight", w.wq(l), c.q_dim(), dim);
        add(b + "attn_k.weight", w.wk(l), kv, dim);
        add(b + "attn_v.weight", w.wv(l), kv, dim);
        add(b + "attn_output.weight", w.wo(l), dim, c.q_dim());
        add(b + "attn_norm.weight", w.rms_att(l), 1, dim);
        add(b + "ffn_gate.weight", w.w1(l), hidden, dim);
        add(b + "ffn_down.weight", w.w2(l), dim, hidden);
        add(b + "ffn_up.weight", w.w3(l), hidden, dim);
        add(b + "ffn_norm.weight", w.rms_ffn(l), 1, dim);
    }
    return out;
}

// A GGUF file re-quantised to options.type (see the top of this file). The result
// refers to `in`'s tensors it copies as they are: keep `in` open until it is written
// (a mapped file is kept alive by the writer; a from_memory file's bytes by the caller).
inline gguf_conversion gguf_requantize(const gguf_file& in, const gguf_convert_options& o = {}) {
    gguf_conversion out;
    gguf_writer& f = out.file;
    f.copy_metadata(in);
    if (o.name) f.set("general.name", gguf_value(*o.name));
    detail::set_file_type(f, o);
    for (const gguf_tensor_info& t : in.tensors()) {
        const weight_type wanted = detail::target_type(t.name, t.shape, o);
        const std::optional<weight_type> from = weight_type_of(t.type);
        if (const gguf_type_choice same = choose_tensor_type(wanted, static_cast<std::size_t>(t.shape[0]), t.name);
            from && *from == same.type) {
            if (!same.note.empty()) out.notes.push_back(same.note);
            f.copy_tensor(in, t);  // already of its type: as it is, nothing lost
            continue;
        }
        if (!from)
            throw std::invalid_argument("kvdecode: gguf conversion: " + in.name() + ": tensor " + t.name + " has type " +
                                        std::string(to_string(t.type)) + ", which kvdecode cannot read; it reads " +
                                        weight_type_names());
        const std::span<const std::byte> bytes = in.data(t);
        const auto row_length = static_cast<std::size_t>(t.shape[0]);
        const std::size_t stride = row_bytes(*from, row_length);
        detail::add_converted(out, t.name, t.shape, wanted, o.threads, [&](std::size_t r, float* buffer) {
            dequantize_row(*from, bytes.data() + r * stride, buffer, row_length);
            return static_cast<const float*>(buffer);
        });
    }
    return out;
}

}  // namespace kvdecode
