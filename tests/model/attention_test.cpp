// Attention over a 16-bit KV cache against attention over a float32 cache holding
// exactly the values the 16-bit one stores (its rows widened): the same inputs, so
// the outputs differ only by the order of float additions. One-token decode (dot and
// axpy on the stored bits) and prefill rows (blocks widened into scratch), GQA, a
// partial last block.

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/cache/mask_cache.hpp"
#include "kvdecode/core/rng.hpp"
#include "kvdecode/model/attention.hpp"

using namespace kvdecode;

namespace {

model_config attention_config() {
    model_config c;
    c.dim = 96, c.hidden_dim = 8, c.n_layers = 2, c.n_heads = 6, c.n_kv_heads = 2, c.head_dim = 40, c.vocab_size = 8;
    c.seq_len = 128;
    return validated(c);
}

double max_difference(const std::vector<float>& a, const std::vector<float>& b) {
    double worst = 0, scale = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        worst = std::max(worst, std::fabs(double(a[i]) - b[i]));
        scale = std::max(scale, std::fabs(double(b[i])));
    }
    return worst / scale;
}

}  // namespace

TEST_CASE("attention reads a 16-bit cache as a float32 cache of the same values", "[model][attention][kv_type]") {
    const model_config c = attention_config();
    const std::size_t tokens = 45, block = 8, layer = 1, hd = c.head_dim;  // 45: a partial last block
    for (kv_type kv : {kv_type::f16, kv_type::bf16}) {
        SECTION(std::string(to_string(kv))) {
            kv_cache<float> half(c, {.capacity_tokens = 64, .block_size = block, .storage = kv});
            kv_cache<float> full(c, {.capacity_tokens = 64, .block_size = block});
            const seq_id sh = half.create(), sf = full.create();
            half.extend(sh, tokens);
            full.extend(sf, tokens);
            rng gen(3);
            std::vector<float> k(hd), v(hd), kw(hd), vw(hd);
            for (std::size_t pos = 0; pos < tokens; ++pos)
                for (std::size_t l = 0; l < c.n_layers; ++l)
                    for (std::size_t g = 0; g < c.n_kv_heads; ++g) {
                        for (std::size_t d = 0; d < hd; ++d) k[d] = float(gen.normal()), v[d] = float(gen.normal());
                        half.store_kv(l, sh, pos, g, k.data(), v.data());
                        // The stored bits, widened, into the float32 cache.
                        using quant::half_format;
                        const auto* hk = half.key_at<std::uint16_t>(l, sh, pos, g);
                        const auto* hv = half.value_at<std::uint16_t>(l, sh, pos, g);
                        if (kv == kv_type::f16) {
                            quant::widen_half<half_format::f16>(hk, kw.data(), hd);
                            quant::widen_half<half_format::f16>(hv, vw.data(), hd);
                        } else {
                            quant::widen_half<half_format::bf16>(hk, kw.data(), hd);
                            quant::widen_half<half_format::bf16>(hv, vw.data(), hd);
                        }
                        full.store_kv(l, sf, pos, g, kw.data(), vw.data());
                    }
            // Queries of the last `rows` tokens.
            const std::size_t rows = 13, start = tokens - rows;
            std::vector<float> q(rows * c.q_dim());
            for (float& x : q) x = float(gen.normal());
            mask_cache<float> masks;
            auto run = [&](const kv_cache<float>& cache, seq_id s, bool one_token) {
                std::vector<float> out(rows * c.q_dim()), scores(rows * tokens), kv_rows(block * hd);
                attention_args<float> a;
                a.layer = layer, a.seq = s, a.q_stride = c.q_dim(), a.out_stride = c.q_dim(), a.scores = scores.data();
                a.kv_rows = kv_rows.data();
                if (one_token) {  // the last token alone, as a decode step
                    a.start = tokens - 1, a.rows = 1, a.q = q.data() + (rows - 1) * c.q_dim(), a.out = out.data();
                    for (std::size_t g = 0; g < c.n_kv_heads; ++g) attend_one_token(cache, a, g);
                    out.resize(c.q_dim());
                } else {  // the last 13 tokens as one prefill chunk
                    a.start = start, a.rows = rows, a.q = q.data(), a.out = out.data();
                    a.mask = masks.get(rows), a.mask_size = rows, a.chunk_row = 0;
                    attend_rows(cache, a);
                }
                return out;
            };
            for (bool one_token : {true, false}) {
                CAPTURE(one_token);
                const auto from_half = run(half, sh, one_token), from_full = run(full, sf, one_token);
                REQUIRE(max_difference(from_half, from_full) < 1e-5);
            }
        }
    }
}
