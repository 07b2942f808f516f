// packed_weights' ways of holding a model, each against the no-cache reference:
// RMSNorm gains folded or separate, Q/K/V biases, weights from a file's layout
// (stored_weights) of one or several storage types, fused projections split into
// segments of different types, the token embedding looked up in any type, a tied
// classifier; and the RoPE table's frequency factors and linear scaling against a
// rotation written out by hand.
//
// Tolerances: float32 paths that multiply the same values as the reference are held
// to the suite's 1e-4 (model/transformer_test.cpp). Where a Q8_0 matrix is involved
// the cached path also quantises its activations to Q8_0 (as ggml does), which the
// float reference does not: there the bound is weight_types_test's 5e-2.

#include <cmath>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/model/decode_context.hpp"
#include "kvdecode/model/fused_projection.hpp"
#include "kvdecode/model/packed_weights.hpp"
#include "kvdecode/model/rope_table.hpp"
#include "kvdecode/model/stored_weights.hpp"
#include "support/models.hpp"
#include "support/stored_matrices.hpp"

using namespace kvdecode;
using kvtest::max_relative_error;

namespace {

std::vector<token_id> some_tokens(std::size_t n, std::size_t vocab, std::uint64_t seed) {
    rng gen(seed);
    std::vector<token_id> t(n);
    for (auto& x : t) x = static_cast<token_id>(gen.next_u64() % vocab);
    return t;
}

// Shapes whose every row length is a multiple of 32 (Q8_0 rows are whole blocks in a file).
std::vector<kvtest::named_config> block_shapes() {
    auto make = [](std::size_t dim, std::size_t hidden, std::size_t heads, std::size_t kv, std::size_t head_dim,
                   std::size_t vocab, bool shared, rope_layout rope) {
        model_config c;
        c.dim = dim, c.hidden_dim = hidden, c.n_layers = 2, c.n_heads = heads, c.n_kv_heads = kv;
        c.head_dim = head_dim, c.vocab_size = vocab, c.seq_len = 128, c.shared_classifier = shared, c.rope = rope;
        return c;
    };
    return {
        {"gqa 2, tied classifier", make(64, 96, 4, 2, 16, 61, true, rope_layout::interleaved)},
        {"multi-query, separate classifier, q_dim != dim", make(96, 160, 4, 1, 32, 70, false, rope_layout::rotate_half)},
    };
}

// A model whose logits do not depend on the q/k/v biases would make the bias tests vacuous.
double bias_effect(const std::shared_ptr<const transformer_weights<float>>& with_bias, const std::vector<token_id>& tokens) {
    auto without = std::make_shared<transformer_weights<float>>(*with_bias);
    for (std::size_t l = 0; l < without->config().n_layers; ++l)
        for (auto span : {without->bq(l), without->bk(l), without->bv(l)}) std::fill(span.begin(), span.end(), 0.0f);
    const auto a = kvtest::reference_logits<float>(with_bias, tokens);
    const auto b = kvtest::reference_logits<float>(without, tokens);
    return (a - b).cwiseAbs().maxCoeff();
}

}  // namespace

TEST_CASE("norm gains kept separate decode like the reference and like folded gains", "[model][packed]") {
    for (const auto& shape : kvtest::awkward_shapes()) {
        SECTION(shape.name) {
            const auto w = kvtest::random_model(shape.config, 5);
            const transformer<float> separate(w, weight_type::f32, norm_gains::separate);
            REQUIRE(separate.weights().attn_norm(0).size() == shape.config.dim);
            REQUIRE(transformer<float>(w).weights().attn_norm(0).empty());
            const auto tokens = some_tokens(5, shape.config.vocab_size, 1);
            kvtest::check_decode_matches_reference(separate, w, tokens, 60);
            kvtest::check_chunks_match_reference(separate, w, some_tokens(70, shape.config.vocab_size, 2), {1, 17, 40});

            // Folded and separate: the same logits up to float rounding.
            const transformer<float> folded(w);
            std::vector<float> a(shape.config.vocab_size), b(shape.config.vocab_size);
            decode_context<float> ca(folded), cb(separate);
            auto cache_a = folded.make_cache(), cache_b = separate.make_cache();
            ca.forward(std::vector{sequence_tokens{cache_a.create(), tokens}}, cache_a, a);
            cb.forward(std::vector{sequence_tokens{cache_b.create(), tokens}}, cache_b, b);
            CHECK(max_relative_error<float, float>(a, b) <= 1e-5);
        }
    }
}

TEST_CASE("q, k and v biases are added after the projection, before RoPE", "[model][packed]") {
    for (auto shape : kvtest::awkward_shapes()) {
        shape.config.qkv_bias = true;
        SECTION(shape.name) {
            const auto w = kvtest::random_model(shape.config, 6);
            const auto tokens = some_tokens(6, shape.config.vocab_size, 3);
            REQUIRE(bias_effect(w, tokens) > 0.1);  // the biases matter to the logits
            kvtest::check_decode_matches_reference(w, tokens, 40);
            kvtest::check_decode_matches_reference(transformer<float>(w, weight_type::f32, norm_gains::separate), w,
                                                   tokens, 40);
            kvtest::check_chunks_match_reference(w, some_tokens(50, shape.config.vocab_size, 4), {3, 20});
        }
    }
}

TEST_CASE("stored f32, f16 and bf16 weights decode like the reference on their values", "[model][packed][stored]") {
    for (const auto& shape : block_shapes()) {
        for (weight_type type : {weight_type::f32, weight_type::f16, weight_type::bf16}) {
            for (bool bias : {false, true}) {
                model_config c = shape.config;
                c.qkv_bias = bias;
                CAPTURE(shape.name, to_string(type), bias);
                const auto original = kvtest::random_model(c, 7);
                const stored_weights s = kvtest::to_stored_weights(*original, [&](const std::string&, std::size_t) { return type; });
                // The reference multiplies the stored values (f16/bf16 rounded), dequantised.
                const auto values = std::make_shared<const transformer_weights<float>>(dequantized(s));
                const transformer<float> model(std::make_shared<const packed_weights<float>>(s));
                REQUIRE(model.weights().type() == type);
                REQUIRE(model.weights().final_norm().size() == c.dim);  // gains separate
                const auto tokens = some_tokens(4, c.vocab_size, 8);
                kvtest::check_decode_matches_reference(model, values, tokens, 30);
                kvtest::check_chunks_match_reference(model, values, some_tokens(40, c.vocab_size, 9), {1, 16, 23});
            }
        }
    }
}

TEST_CASE("a mixed-type stored model: fused projections in segments, any embedding type", "[model][packed][stored]") {
    for (const auto& shape : block_shapes()) {
        SECTION(shape.name) {
            const auto original = kvtest::random_model(shape.config, 10);
            // Every fused part and the embedding in another float type: q f32, k bf16, v f16;
            // w1 f16, w3 f32; the embedding bf16 (so the tied classifier too).
            auto type_of = [](const std::string& name, std::size_t layer) {
                if (name == "wk" || name == "token_embedding") return weight_type::bf16;
                if (name == "wv" || name == "w1" || (name == "wo" && layer == 1)) return weight_type::f16;
                return weight_type::f32;
            };
            const stored_weights s = kvtest::to_stored_weights(*original, type_of);
            const auto values = std::make_shared<const transformer_weights<float>>(dequantized(s));
            const packed_weights<float> packed(s);
            REQUIRE(packed.wqkv(0).segments().size() == 3);
            REQUIRE(packed.wqkv(0).segments()[1].first_output == shape.config.q_dim());
            REQUIRE(packed.wqkv(0).segments()[2].first_output == shape.config.q_dim() + shape.config.kv_dim());
            REQUIRE(packed.w13(1).segments().size() == 2);
            REQUIRE(packed.token_embedding().matrix()->type() == weight_type::bf16);
            REQUIRE((packed.token_embedding().matrix().get() == &packed.classifier()) == shape.config.shared_classifier);
            const transformer<float> model(std::make_shared<const packed_weights<float>>(s));
            kvtest::check_decode_matches_reference(model, values, some_tokens(4, shape.config.vocab_size, 11), 30);
            kvtest::check_chunks_match_reference(model, values, some_tokens(40, shape.config.vocab_size, 12), {7, 33});
        }
    }
}

TEST_CASE("a stored model with Q8_0 matrices, embedding included, stays near the reference", "[model][packed][stored]") {
    for (const auto& shape : block_shapes()) {
        SECTION(shape.name) {
            model_config c = shape.config;
            c.qkv_bias = true;
            const auto original = kvtest::random_model(c, 13);
            // Q8_0 everywhere but v and the down projection of layer 1 (Q4_K_M-like mixes).
            auto type_of = [](const std::string& name, std::size_t layer) {
                return (name == "wv" || (name == "w2" && layer == 1)) ? weight_type::f16 : weight_type::q8_0;
            };
            const stored_weights s = kvtest::to_stored_weights(*original, type_of);
            const auto values = std::make_shared<const transformer_weights<float>>(dequantized(s));
            const auto packed = std::make_shared<const packed_weights<float>>(s);
            REQUIRE(packed->type() == weight_type::q8_0);
            REQUIRE(packed->wqkv(0).segments().size() == 2);  // q and k stacked in one Q8_0 matrix, v apart
            REQUIRE(packed->wqkv(0).segments()[0].matrix.out_dim() == c.q_dim() + c.kv_dim());
            REQUIRE(packed->bytes_by_type().at(weight_type::f16) > 0);
            // Q8_0 is interleaved at load (q8_0_interleaved.hpp): never in place.
            REQUIRE(!packed->wo(0).in_place());
            REQUIRE(!packed->token_embedding().matrix()->in_place());
            const transformer<float> model(packed);
            kvtest::check_decode_matches_reference(model, values, some_tokens(4, c.vocab_size, 14), 30, 5e-2);
            // The embedding is looked up by dequantising one row: exactly the Q8_0 values.
            std::vector<float> row(c.dim), want(c.dim);
            packed->token_embedding().lookup(5, row.data());
            std::copy_n(values->token_embedding() + 5 * c.dim, c.dim, want.begin());
            REQUIRE(row == want);
        }
    }
}

TEST_CASE("a fused projection in mixed-type segments equals its parts and the single-type matrix",
          "[model][packed][stored]") {
    // Values k / 64 with |k| <= 127 and every block holding a +-127/64: exact in f32,
    // f16, bf16 and Q8_0 (scale 1/64), so every type stores the same matrix.
    const std::size_t in_dim = 96, parts_out[] = {40, 24, 24}, out_dim = 88, rows = 3;
    rng gen(17);
    std::vector<float> w(out_dim * in_dim);
    for (std::size_t i = 0; i < w.size(); ++i)
        w[i] = (i % 32 == 0 ? 127.0f : static_cast<float>(static_cast<int>(gen.next_u64() % 255) - 127)) / 64.0f;
    std::vector<float> x(rows * in_dim), bias(out_dim);
    for (float& v : x) v = static_cast<float>(gen.normal());
    for (float& v : bias) v = static_cast<float>(gen.normal());

    auto product = [&](const fused_projection<float>& f) {
        std::vector<float> out(rows * out_dim, -1.0f);
        aligned_buffer<std::byte> scratch(f.scratch_bytes(rows));
        for (const auto& s : f.segments()) {
            const matrix_product<float> p{x.data(), in_dim, rows, nullptr, out.data() + s.first_output, out_dim, false};
            s.matrix.prepare(p, scratch.data(), 0, rows);
            s.matrix.multiply(p, scratch.data(), 0, s.matrix.units());
        }
        if (f.bias())
            for (std::size_t r = 0; r < rows; ++r)
                for (std::size_t o = 0; o < out_dim; ++o) out[r * out_dim + o] += f.bias()[o];
        return out;
    };
    auto stored_parts = [&](std::span<const weight_type> types, std::vector<std::vector<std::byte>>& keep) {
        std::vector<stored_matrix> parts;
        std::size_t first = 0;
        for (std::size_t i = 0; i < 3; ++i) {
            keep.push_back(kvtest::to_stored(types[i], w.data() + first * in_dim, parts_out[i], in_dim));
            parts.push_back({types[i], keep.back(), parts_out[i], in_dim});
            first += parts_out[i];
        }
        return parts;
    };

    for (weight_type single : {weight_type::f32, weight_type::q8_0}) {
        CAPTURE(to_string(single));
        std::vector<std::vector<std::byte>> keep;
        keep.reserve(8);
        const weight_type same[] = {single, single, single};
        const fused_projection<float> one(stored_parts(same, keep), nullptr, bias);
        REQUIRE(one.segments().size() == 1);
        REQUIRE(one.out_dim() == out_dim);
        // One matrix of the concatenated rows: exactly the matrix built from them directly.
        const auto direct = kvtest::to_stored(single, w.data(), out_dim, in_dim);
        const fused_projection<float> whole(weight_matrix<float>(single, direct, out_dim, in_dim), bias);
        REQUIRE(product(one) == product(whole));

        // Split: the part of the other type becomes a segment of its own; every
        // segment's outputs are exactly its own matrix's.
        const weight_type other = single == weight_type::f32 ? weight_type::bf16 : weight_type::f16;
        const weight_type mixed[] = {single, other, single};
        const fused_projection<float> split(stored_parts(mixed, keep), nullptr, bias);
        REQUIRE(split.segments().size() == 3);
        const auto got = product(split);
        std::size_t first = 0;
        for (std::size_t i = 0; i < 3; ++i) {
            const auto part = kvtest::to_stored(mixed[i], w.data() + first * in_dim, parts_out[i], in_dim);
            const fused_projection<float> alone(weight_matrix<float>(mixed[i], part, parts_out[i], in_dim),
                                                std::span<const float>(bias).subspan(first, parts_out[i]));
            std::vector<float> out(rows * parts_out[i]);
            aligned_buffer<std::byte> scratch(alone.scratch_bytes(rows));
            const matrix_product<float> p{x.data(), in_dim, rows, nullptr, out.data(), parts_out[i], false};
            alone.segments()[0].matrix.prepare(p, scratch.data(), 0, rows);
            alone.segments()[0].matrix.multiply(p, scratch.data(), 0, alone.segments()[0].matrix.units());
            for (std::size_t r = 0; r < rows; ++r)
                for (std::size_t o = 0; o < parts_out[i]; ++o)
                    REQUIRE(got[r * out_dim + first + o] == out[r * parts_out[i] + o] + bias[first + o]);
            first += parts_out[i];
        }
        // And the split product equals the single-type one: same values, other kernels
        // (float sums in another order; Q8_0 activations for the Q8_0 segments only).
        const auto want = product(one);
        const double bound = single == weight_type::f32 ? 1e-5 : 0.0;
        if (single == weight_type::f32) {
            CHECK(max_relative_error<float, float>(got, want) <= bound);
        } else {
            // Q8_0 segments are bit-identical to the single matrix's rows; the f16
            // segment multiplies float activations, not Q8_0 ones: within Q8_0's error.
            for (std::size_t r = 0; r < rows; ++r)
                for (std::size_t o = 0; o < out_dim; ++o)
                    if (o < 40 || o >= 64) REQUIRE(got[r * out_dim + o] == want[r * out_dim + o]);
            CHECK(max_relative_error<float, float>(got, want) <= 2e-2);
        }
    }
}

TEST_CASE("stored weights of the wrong shape or size are errors naming the weight", "[model][packed][stored]") {
    const model_config c = block_shapes()[0].config;
    const auto original = kvtest::random_model(c, 18);
    auto all_f32 = [](const std::string&, std::size_t) { return weight_type::f32; };
    {
        stored_weights s = kvtest::to_stored_weights(*original, all_f32);
        s.layers[1].wk.out_dim += 1;
        REQUIRE_THROWS_WITH(packed_weights<float>(s), Catch::Contains("layer 1 wk") && Catch::Contains("expected 32 x 64") &&
                                                          Catch::Contains("found 33 x 64"));
    }
    {
        stored_weights s = kvtest::to_stored_weights(*original, all_f32);
        s.layers[0].w2.bytes = s.layers[0].w2.bytes.first(s.layers[0].w2.bytes.size() - 4);
        REQUIRE_THROWS_WITH(packed_weights<float>(s), Catch::Contains("layer 0 w2") && Catch::Contains("needs 24576 bytes") &&
                                                          Catch::Contains("got 24572"));
    }
    {
        stored_weights s = kvtest::to_stored_weights(*original, all_f32);
        s.output_norm.pop_back();
        REQUIRE_THROWS_WITH(packed_weights<float>(s), Catch::Contains("output_norm") && Catch::Contains("expected 64 values"));
    }
    {
        stored_weights s = kvtest::to_stored_weights(*original, all_f32);
        s.layers[0].bq.assign(c.q_dim(), 0.0f);  // a bias the config does not have
        REQUIRE_THROWS_WITH(packed_weights<float>(s), Catch::Contains("layer 0 bq"));
    }
}

TEST_CASE("RoPE frequency factors and linear scaling rotate as written out by hand", "[model][rope]") {
    for (rope_layout layout : {rope_layout::interleaved, rope_layout::rotate_half}) {
        model_config c;
        c.dim = 64, c.hidden_dim = 8, c.n_layers = 1, c.n_heads = 2, c.n_kv_heads = 2, c.vocab_size = 4, c.seq_len = 300;
        c.rope = layout;
        c.rope_theta = 500000.0;
        c.rope_linear_scale = 4.0;
        c.rope_freq_factors = {1.0f, 1.0f, 2.4423f, 8.0f, 8.0f, 8.0f, 8.0f, 8.0f, 8.0f, 8.0f, 8.0f, 8.0f, 8.0f, 8.0f, 8.0f, 8.0f};
        c = validated(c);
        const rope_table<double> table(c);
        rng gen(19);
        for (std::size_t pos : {0u, 1u, 7u, 150u, 299u}) {
            std::vector<double> x(2 * c.head_dim);
            for (double& v : x) v = gen.normal();
            std::vector<double> want = x;
            for (std::size_t h = 0; h < 2; ++h)
                for (std::size_t i = 0; i < c.head_dim / 2; ++i) {
                    // Pair i: theta^(-2i/d) / factor[i], at position pos / 4.
                    const double angle = (static_cast<double>(pos) / 4.0) *
                                         std::pow(500000.0, -2.0 * static_cast<double>(i) / 32.0) / c.rope_freq_factors[i];
                    const std::size_t a = h * 32 + (layout == rope_layout::interleaved ? 2 * i : i);
                    const std::size_t b = h * 32 + (layout == rope_layout::interleaved ? 2 * i + 1 : i + 16);
                    want[a] = x[a] * std::cos(angle) - x[b] * std::sin(angle);
                    want[b] = x[b] * std::cos(angle) + x[a] * std::sin(angle);
                }
            table.apply(x.data(), 2, pos);
            for (std::size_t i = 0; i < x.size(); ++i) REQUIRE(x[i] == Approx(want[i]).margin(1e-12));
        }
    }
    model_config bad;
    bad.dim = 64, bad.hidden_dim = 8, bad.n_layers = 1, bad.n_heads = 2, bad.n_kv_heads = 2, bad.vocab_size = 4, bad.seq_len = 8;
    bad.rope_freq_factors = {1.0f, 2.0f};
    REQUIRE_THROWS_WITH(validated(bad), Catch::Contains("rope_freq_factors has 2 entries, expected head_dim / 2 = 16"));
    bad.rope_freq_factors.assign(16, 1.0f);
    bad.rope_freq_factors[3] = 0.0f;
    REQUIRE_THROWS_WITH(validated(bad), Catch::Contains("rope_freq_factors[3]"));
    bad.rope_freq_factors.clear();
    bad.rope_linear_scale = 0.0;
    REQUIRE_THROWS_WITH(validated(bad), Catch::Contains("rope_linear_scale"));
}

TEST_CASE("a mixed-type stored model gives the same logits on 1, 2 and 4 threads", "[model][packed][stored]") {
    model_config c = block_shapes()[1].config;
    c.qkv_bias = true;
    const auto original = kvtest::random_model(c, 20);
    auto type_of = [](const std::string& name, std::size_t) {
        return name == "wv" ? weight_type::bf16 : name == "w3" ? weight_type::f32 : weight_type::q8_0;
    };
    const transformer<float> model(std::make_shared<const packed_weights<float>>(kvtest::to_stored_weights(*original, type_of)));
    const auto tokens = some_tokens(37, c.vocab_size, 21);
    std::vector<std::vector<float>> results;
    for (std::size_t threads : {1u, 2u, 4u}) {
        decode_context<float> ctx(model, {.threads = threads, .min_work_per_thread = 1});
        auto cache = model.make_cache();
        std::vector<float> logits(tokens.size() * c.vocab_size);
        ctx.forward(std::vector{sequence_tokens{cache.create(), tokens}}, cache, logits, logits_for::every_token);
        results.push_back(logits);
    }
    // Every product output is computed by one thread in one order; attention over
    // prefill rows split between threads may round differently (as in decode_context_test).
    REQUIRE(max_relative_error<float, float>(results[1], results[0]) <= 1e-5);
    REQUIRE(max_relative_error<float, float>(results[2], results[0]) <= 1e-5);
}
