// A user's program: include the installed headers, run a tiny random model.
#include <kvdecode/kvdecode.hpp>

#include <cstdio>
#include <memory>
#include <vector>

int main() {
    kvdecode::model_config config;
    config.dim = 16, config.hidden_dim = 24, config.n_layers = 1, config.n_heads = 2, config.n_kv_heads = 1;
    config.vocab_size = 10, config.seq_len = 8;
    auto weights = std::make_shared<const kvdecode::transformer_weights<float>>(
        kvdecode::random_weights<float>(config, 1));
    kvdecode::transformer<float> model(weights);
    auto cache = model.make_cache();
    const std::vector<kvdecode::token_id> prompt = {1, 2, 3};
    std::vector<float> logits(config.vocab_size);
    model.forward(std::vector{kvdecode::sequence_tokens{cache.create(), prompt}}, cache, logits);
    std::printf("first logit %f\n", static_cast<double>(logits[0]));
    return cache.stats().blocks_used == 1 ? 0 : 1;
}
