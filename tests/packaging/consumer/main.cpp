// A user's program against the installed package: the README's API tour on a
// small random model (no files needed), so the tour keeps compiling as written.
#include <kvdecode/kvdecode.hpp>

#include <cstdio>
#include <memory>
#include <vector>

using namespace kvdecode;

int main() {
    model_config config;
    config.dim = 32, config.hidden_dim = 48, config.n_layers = 2, config.n_heads = 4, config.n_kv_heads = 2;
    config.vocab_size = 40, config.seq_len = 64;
    auto weights = std::make_shared<const transformer_weights<float>>(random_weights<float>(config, 1));
    const transformer<float> model(weights);
    decode_context<float> ctx(model);
    auto cache = model.make_cache({.capacity_tokens = 1024, .block_size = 16});

    std::vector<std::vector<token_id>> prompts = {{1, 5, 9}, {1, 7}};
    auto greedy_out = greedy(ctx, cache, prompts, {.max_new_tokens = 10, .eos = {2}});
    auto sampled = sample(ctx, cache, prompts, {.max_new_tokens = 10, .eos = {2}, .seed = 7},
                          sampler::sampling()
                              .add(repetition_penalty{.penalty = 1.1f})
                              .add(temperature{.value = 0.8f})
                              .add(top_p{.p = 0.9f}));
    auto beams = beam_search(ctx, cache, prompts, {.num_beams = 4, .num_return_sequences = 2, .length_penalty = 1.0,
                                                     .early_stopping = beam_stopping::heuristic,
                                                     .generation = {.max_new_tokens = 10, .eos = {2}}});
    auto tilted = maxent_ts(ctx, cache, prompts[0],
                            [](std::span<const token_id> x) { return x.size() > 6 ? 1.0 : 0.0; },
                            {.num_rollouts = 8, .lambda = 2.0, .mode = tree_mode::sample, .rollouts_per_batch = 4});

    seq_id a = cache.create();
    std::vector<float> logits(2 * config.vocab_size);
    ctx.forward(std::vector{sequence_tokens{a, prompts[0]}}, cache, logits);
    seq_id b = cache.fork(a);
    std::vector<token_id> x = {4}, y = {6};
    ctx.forward(std::vector{sequence_tokens{a, x}, sequence_tokens{b, y}}, cache, logits);
    cache.truncate(a, prompts[0].size());
    cache.release(b);
    const bool ok = cache.stats().blocks_used == 1 && greedy_out.sequences.size() == 2 &&
                    sampled.sequences[1].tokens.size() > 2 && beams.hypotheses[0].size() == 2 &&
                    tilted.stats.rollouts == 8;
    cache.release(a);
    std::printf("consumer: %s\n", ok ? "ok" : "unexpected results");
    return ok && cache.stats().blocks_used == 0 ? 0 : 1;
}
