// The shipped model with its weights stored as bf16, f16, Q8_0, Q4_0, Q4_1, Q5_0 and
// Q5_1 (converted at load)
// against the same model in float32, on the README's prompt.
//   logits: every position of a 64-token greedy continuation, teacher-forced, within
//           an infinity-norm relative error bound per type (below);
//   tokens: free-running greedy decoding of 64 tokens equals float32's up to the first
//           step where float32's top-two margin is within twice that step's largest
//           logit deviation — a near-tie the rounding may legitimately flip.
// Bounds, from the rounding each type does: bf16 keeps 8 significant bits (relative
// error up to 2^-9 per weight), f16 11 bits (2^-12), Q8_0 one step of max|block|/127
// per weight, and the activations quantised the same way: two roundings, so about
// twice bf16's error. Measured on this model (printed by the test): bf16 0.0049,
// f16 0.00062, Q8_0 0.025; bf16 and f16 then give all 64 tokens of float32, Q8_0
// the first 2 and then a near-tie. The bounds are 2e-2 (bf16), 2e-3 (f16) and 5e-2
// (Q8_0), about 2 to 4 times the measurement: errors compound over the 4 layers and
// the classifier, and differ with the compiler's summation order.
// The legacy types' weight step is 16 (Q4: max|block| / 8, or (max - min) / 15 ~ 2 max
// / 15) or 8 (Q5: / 16, / 31) times Q8_0's, so their weight error is that many times
// Q8_0's (about half of Q8_0's total, the other half being the activations): ~0.2 for
// Q4, ~0.1 for Q5. Measured: Q4_0 0.25, Q4_1 0.21, Q5_0 0.13, Q5_1 0.085 (the _1 types
// spend their steps on [min, max] rather than [-max, max], so they do a little better);
// the tokens follow float32 for 2 to 13 steps, then a near-tie within the deviation.
// The bounds are about 2 times the measurement: 0.5, 0.4, 0.25, 0.2.

#include <algorithm>
#include <filesystem>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/decode/generate.hpp"
#include "kvdecode/io/llama2c_checkpoint.hpp"
#include "kvdecode/io/llama2c_tokenizer.hpp"
#include "kvdecode/model/decode_context.hpp"
#include "support/test_data.hpp"

#ifndef KVDECODE_MODELS_DIR
#error "KVDECODE_MODELS_DIR must name the project's models/ folder"
#endif

using namespace kvdecode;

namespace {

const std::filesystem::path models_dir = KVDECODE_MODELS_DIR;

// Logits of every position of `tokens`, in one prefill.
std::vector<float> every_logit(const transformer<float>& model, const std::vector<token_id>& tokens) {
    decode_context<float> ctx(model);
    auto cache = model.make_cache();
    std::vector<float> logits(tokens.size() * model.config().vocab_size);
    ctx.forward(std::vector{sequence_tokens{cache.create(), tokens}}, cache, logits, logits_for::every_token);
    return logits;
}

std::vector<token_id> greedy_tokens(const transformer<float>& model, const std::vector<token_id>& prompt, std::size_t n) {
    decode_context<float> ctx(model);
    auto cache = model.make_cache();
    const std::vector<std::vector<token_id>> prompts = {prompt};
    return greedy(ctx, cache, prompts, {.max_new_tokens = n, .eos = {}}).sequences[0].tokens;
}

}  // namespace

TEST_CASE("bf16, f16, Q8_0 and Q4/Q5 weights decode the shipped model close to float32", "[model][quant][shipped]") {
    const auto weights = read_llama2c_checkpoint<float>(models_dir / "kjv_llama.bin");
    const auto tok = tokenizer::read_llama2c(models_dir / "kjv_tok1024.bin", 1024);
    const auto prompt = tok.encode("And God said");
    const std::size_t vocab = weights.config().vocab_size, steps = 64;

    const transformer<float> f32(weights);
    const auto want_tokens = greedy_tokens(f32, prompt, steps);
    const auto want_logits = every_logit(f32, want_tokens);

    struct type_case {
        weight_type type;
        double bound;  // infinity-norm relative logit error, per position
    };
    for (const type_case& tc : {type_case{weight_type::bf16, 2e-2}, type_case{weight_type::f16, 2e-3},
                                type_case{weight_type::q8_0, 5e-2}, type_case{weight_type::q4_0, 0.5},
                                type_case{weight_type::q4_1, 0.4}, type_case{weight_type::q5_0, 0.25},
                                type_case{weight_type::q5_1, 0.2}}) {
        CAPTURE(to_string(tc.type));
        const transformer<float> model(weights, tc.type);
        REQUIRE(model.weights().type() == tc.type);
        REQUIRE(model.weights().bytes_per_token() < f32.weights().bytes_per_token());

        // Teacher-forced: the same tokens, every position's logits.
        const auto got = every_logit(model, want_tokens);
        double worst = 0;
        std::vector<double> deviation(want_tokens.size());
        for (std::size_t i = 0; i < want_tokens.size(); ++i) {
            const std::span<const float> a(got.data() + i * vocab, vocab), b(want_logits.data() + i * vocab, vocab);
            worst = std::max(worst, kvtest::max_relative_error<float, float>(a, b));
            for (std::size_t v = 0; v < vocab; ++v) deviation[i] = std::max(deviation[i], double(std::abs(a[v] - b[v])));
        }
        WARN(to_string(tc.type) << ": worst relative logit error " << worst);
        CHECK(worst <= tc.bound);

        // Free-running: identical until a near-tie.
        const auto tokens = greedy_tokens(model, prompt, steps);
        std::size_t same = prompt.size();
        while (same < tokens.size() && tokens[same] == want_tokens[same]) ++same;
        WARN(to_string(tc.type) << ": identical generated tokens: " << same - prompt.size() << " of " << steps);
        if (same < tokens.size()) {
            // float32's logits at the step that chose token `same` (position same - 1).
            const std::span<const float> row(want_logits.data() + (same - 1) * vocab, vocab);
            std::vector<float> sorted(row.begin(), row.end());
            std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<>());
            const double margin = sorted[0] - sorted[1];
            INFO("float32 margin at the first difference " << margin << ", deviation there " << deviation[same - 1]);
            CHECK(margin <= 2 * deviation[same - 1]);
        }
    }
}
