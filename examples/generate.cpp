// kvdecode-generate: decode a llama2.c checkpoint from the command line.
//
//   kvdecode-generate --model stories15M.bin --tokenizer tokenizer.bin --prompt "Once upon a time"
//   kvdecode-generate --model m.bin --prompt-ids 1,300,400 --mode sample --temperature 0.8 --top-p 0.9 --print-ids
//
// Each mode is a function from the loaded model and the parsed options to a
// result; adding a mode means adding a flag or two and one function.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <kvdecode/kvdecode.hpp>

#ifndef KVDECODE_DEFAULT_MODEL_DIR
#define KVDECODE_DEFAULT_MODEL_DIR "models"
#endif

namespace {

using kvdecode::token_id;

struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct cli_options {
    std::string model;
    std::string tokenizer;
    std::optional<std::string> prompt;
    std::optional<std::vector<token_id>> prompt_ids;
    std::string mode = "greedy";
    std::size_t max_new_tokens = 128;
    std::size_t min_new_tokens = 0;
    std::optional<std::vector<token_id>> eos;
    std::optional<float> temperature;      // default 1 (tree rollouts: 0.8)
    std::optional<std::size_t> top_k;      // default off (tree rollouts: 50)
    std::optional<float> top_p;            // default 1 (tree rollouts: 0.9)
    float min_p = 0.0f;
    float repetition_penalty = 1.0f;
    std::uint64_t seed = 0;
    std::size_t threads = 1;
    kvdecode::weight_type weights = kvdecode::weight_type::f32;
    std::size_t no_repeat_ngram = 0;  // 0: off
    // beam search
    std::size_t num_beams = 4;
    std::size_t num_return = 1;
    double length_penalty = 1.0;
    kvdecode::beam_stopping early_stopping = kvdecode::beam_stopping::heuristic;
    // tree search
    std::size_t rollouts = 10;
    double lambda = 1.0;
    std::size_t expansion_k = 3;
    std::size_t rollout_tokens = 50;
    std::size_t rollouts_per_batch = 1;
    double c_puct = 1.0;
    kvdecode::tree_mode tree_mode = kvdecode::tree_mode::sample;
    std::string reward = "length";
    bool print_ids = false;
    bool print_scores = false;
    bool stats = false;
};

constexpr const char* usage_text = R"(usage: kvdecode-generate [--model PATH] [options]

  --model PATH              llama2.c checkpoint (legacy format); default: the shipped
                            models/kjv_llama.bin with its tokenizer
  --tokenizer PATH          llama2.c tokenizer; needed for --prompt and for text output
  --prompt TEXT             prompt text (BOS is added)
  --prompt-ids 1,2,3        prompt token ids (BOS is not added)
  --mode MODE               greedy | sample | beam | tree (default greedy)
  --max-new-tokens N        tokens to generate at most (default 128)
  --min-new-tokens N        EOS is not chosen before N tokens (default 0)
  --eos ID[,ID...]          end-of-sequence ids (default: the tokenizer's EOS, else 2)
  --temperature X           sampling temperature, > 0 (default 1)
  --top-k K                 keep the K most likely tokens (default off)
  --top-p P                 keep the most likely tokens reaching mass P (default 1)
  --min-p P                 drop tokens below P times the best token's probability (default 0)
  --repetition-penalty X    Hugging Face's repetition penalty, > 0 (default 1: off)
  --no-repeat-ngram N       forbid repeating any N-gram (default off)
  --seed N                  sampling seed (default 0)
beam search (--mode beam), with the semantics of Hugging Face transformers:
  --num-beams N             beams per prompt (default 4)
  --num-return N            hypotheses to print, best first, at most --num-beams (default 1)
  --length-penalty X        score = sum of log-probs / length^X (default 1)
  --early-stopping MODE     true | false | never, as transformers' early_stopping (default false)
  --print-scores            with --print-ids: each line starts with the score and a tab
MaxEnt-TS tree search (--mode tree): samples from p(x) exp(lambda r(x)), or searches for its mode
  --reward R                token:ID (count of ID), length (generated tokens), contains:TEXT
                            (1 if the generated text contains TEXT; needs --tokenizer) (default length)
  --rollouts N              rollouts per search (default 10)
  --lambda X                reward weight, > 0 (default 1)
  --expansion-k K           children per expanded node (default 3)
  --rollout-tokens N        tokens sampled per rollout at most (default 50); --temperature,
                            --top-k, --top-p set the rollouts' sampling (default 0.8, 50, 0.9)
  --tree-mode sample|search sample the tilted distribution or search its mode (default sample)
  --rollouts-per-batch N    rollouts generated together (default 1)
  --c-puct X                search mode's exploration weight (default 1)
  --max-new-tokens is the depth limit; --stats prints the tree statistics
  --threads N               threads for the model's matrix products (default 1)
  --weights TYPE            f32 | bf16 | f16 | q8_0: store the weights so, converted at load (default f32)
  --print-ids               print each returned sequence's ids (prompt included) instead of text
  --stats                   print token counts, tokens/s and KV-cache blocks to stderr
  --help                    this text
)";

std::size_t parse_size(const std::string& flag, const std::string& v) {
    std::size_t used = 0;
    unsigned long long n = 0;
    try {
        if (v.empty() || v[0] == '-') throw std::invalid_argument(v);
        n = std::stoull(v, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used != v.size() || v.empty()) throw usage_error(flag + " expects a non-negative integer, got '" + v + "'");
    return static_cast<std::size_t>(n);
}

float parse_float(const std::string& flag, const std::string& v) {
    std::size_t used = 0;
    float x = 0;
    try {
        x = std::stof(v, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used != v.size() || v.empty()) throw usage_error(flag + " expects a number, got '" + v + "'");
    return x;
}

std::vector<token_id> parse_ids(const std::string& flag, const std::string& v) {
    std::vector<token_id> ids;
    std::size_t start = 0;
    while (start <= v.size()) {
        const std::size_t comma = std::min(v.find(',', start), v.size());
        const std::string item = v.substr(start, comma - start);
        const std::size_t id = parse_size(flag, item);
        if (id > static_cast<std::size_t>(INT32_MAX)) throw usage_error(flag + ": id " + item + " is too large");
        ids.push_back(static_cast<token_id>(id));
        start = comma + 1;
    }
    return ids;
}

kvdecode::beam_stopping parse_early_stopping(const std::string& v) {
    if (v == "true") return kvdecode::beam_stopping::when_full;
    if (v == "false") return kvdecode::beam_stopping::heuristic;
    if (v == "never") return kvdecode::beam_stopping::never;
    throw usage_error("--early-stopping must be true, false or never, got '" + v + "'");
}

std::optional<cli_options> parse(int argc, char** argv) {
    cli_options o;
    using setter = std::function<void(const std::string&)>;
    const std::map<std::string, setter> valued = {
        {"--model", [&](const std::string& v) { o.model = v; }},
        {"--tokenizer", [&](const std::string& v) { o.tokenizer = v; }},
        {"--prompt", [&](const std::string& v) { o.prompt = v; }},
        {"--prompt-ids", [&](const std::string& v) { o.prompt_ids = parse_ids("--prompt-ids", v); }},
        {"--mode", [&](const std::string& v) { o.mode = v; }},
        {"--max-new-tokens", [&](const std::string& v) { o.max_new_tokens = parse_size("--max-new-tokens", v); }},
        {"--min-new-tokens", [&](const std::string& v) { o.min_new_tokens = parse_size("--min-new-tokens", v); }},
        {"--eos", [&](const std::string& v) { o.eos = parse_ids("--eos", v); }},
        {"--temperature", [&](const std::string& v) { o.temperature = parse_float("--temperature", v); }},
        {"--top-k", [&](const std::string& v) { o.top_k = parse_size("--top-k", v); }},
        {"--top-p", [&](const std::string& v) { o.top_p = parse_float("--top-p", v); }},
        {"--min-p", [&](const std::string& v) { o.min_p = parse_float("--min-p", v); }},
        {"--repetition-penalty", [&](const std::string& v) { o.repetition_penalty = parse_float("--repetition-penalty", v); }},
        {"--seed", [&](const std::string& v) { o.seed = parse_size("--seed", v); }},
        {"--threads", [&](const std::string& v) { o.threads = parse_size("--threads", v); }},
        {"--weights", [&](const std::string& v) {
             try {
                 o.weights = kvdecode::parse_weight_type(v);
             } catch (const std::invalid_argument&) {
                 throw usage_error("--weights must be f32, bf16, f16 or q8_0, got '" + v + "'");
             }
         }},
        {"--no-repeat-ngram", [&](const std::string& v) { o.no_repeat_ngram = parse_size("--no-repeat-ngram", v); }},
        {"--num-beams", [&](const std::string& v) { o.num_beams = parse_size("--num-beams", v); }},
        {"--num-return", [&](const std::string& v) { o.num_return = parse_size("--num-return", v); }},
        {"--length-penalty", [&](const std::string& v) { o.length_penalty = parse_float("--length-penalty", v); }},
        {"--early-stopping", [&](const std::string& v) { o.early_stopping = parse_early_stopping(v); }},
        {"--reward", [&](const std::string& v) { o.reward = v; }},
        {"--rollouts", [&](const std::string& v) { o.rollouts = parse_size("--rollouts", v); }},
        {"--lambda", [&](const std::string& v) { o.lambda = parse_float("--lambda", v); }},
        {"--expansion-k", [&](const std::string& v) { o.expansion_k = parse_size("--expansion-k", v); }},
        {"--rollout-tokens", [&](const std::string& v) { o.rollout_tokens = parse_size("--rollout-tokens", v); }},
        {"--rollouts-per-batch", [&](const std::string& v) { o.rollouts_per_batch = parse_size("--rollouts-per-batch", v); }},
        {"--c-puct", [&](const std::string& v) { o.c_puct = parse_float("--c-puct", v); }},
        {"--tree-mode", [&](const std::string& v) {
             if (v != "sample" && v != "search") throw usage_error("--tree-mode must be sample or search, got '" + v + "'");
             o.tree_mode = v == "sample" ? kvdecode::tree_mode::sample : kvdecode::tree_mode::search;
         }},
    };
    const std::map<std::string, bool*> switches = {
        {"--print-ids", &o.print_ids}, {"--print-scores", &o.print_scores}, {"--stats", &o.stats}};
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        std::optional<std::string> value;
        if (const auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
            value = arg.substr(eq + 1);
            arg = arg.substr(0, eq);
        }
        if (arg == "--help" || arg == "-h") {
            std::fputs(usage_text, stdout);
            return std::nullopt;
        }
        if (auto s = switches.find(arg); s != switches.end() && !value) {
            *s->second = true;
        } else if (auto v = valued.find(arg); v != valued.end()) {
            if (!value) {
                if (i + 1 >= argc) throw usage_error(arg + " needs a value");
                value = argv[++i];
            }
            v->second(*value);
        } else {
            throw usage_error("unknown option '" + std::string(argv[i]) + "' (see --help)");
        }
    }
    if (o.model.empty()) {  // the model the project trains and ships
        o.model = std::string(KVDECODE_DEFAULT_MODEL_DIR) + "/kjv_llama.bin";
        if (o.tokenizer.empty()) o.tokenizer = std::string(KVDECODE_DEFAULT_MODEL_DIR) + "/kjv_tok1024.bin";
    }
    if (o.prompt && o.prompt_ids) throw usage_error("give --prompt or --prompt-ids, not both");
    if (o.prompt && o.tokenizer.empty()) throw usage_error("--prompt needs --tokenizer (or use --prompt-ids)");
    if (o.mode != "greedy" && o.mode != "sample" && o.mode != "beam" && o.mode != "tree")
        throw usage_error("--mode must be greedy, sample, beam or tree, got '" + o.mode + "'");
    if (o.threads == 0) throw usage_error("--threads must be at least 1");
    return o;
}

// The processors the flags ask for, in Hugging Face's order.
kvdecode::sampler make_sampler(const cli_options& o) {
    auto s = o.mode == "sample" ? kvdecode::sampler::sampling() : kvdecode::sampler::greedy();
    if (o.repetition_penalty != 1.0f) s.add(kvdecode::repetition_penalty{o.repetition_penalty});
    if (o.temperature && *o.temperature != 1.0f) s.add(kvdecode::temperature{*o.temperature});
    if (o.top_k && *o.top_k != 0) s.add(kvdecode::top_k{*o.top_k});
    if (o.top_p && *o.top_p != 1.0f) s.add(kvdecode::top_p{*o.top_p});
    if (o.min_p != 0.0f) s.add(kvdecode::min_p{o.min_p});
    if (o.no_repeat_ngram != 0) s.add(kvdecode::no_repeat_ngram{o.no_repeat_ngram});
    return s;
}

// Beam and tree search: the processors transformers applies without sampling (the
// tree's rollouts take --temperature, --top-k, --top-p themselves).
std::vector<kvdecode::logits_processor> search_processors(const cli_options& o) {
    std::vector<kvdecode::logits_processor> chain;
    if (o.repetition_penalty != 1.0f) chain.push_back(kvdecode::repetition_penalty{o.repetition_penalty});
    if (o.no_repeat_ngram != 0) chain.push_back(kvdecode::no_repeat_ngram{o.no_repeat_ngram});
    return chain;
}

void print_ids(std::span<const token_id> tokens) {
    for (std::size_t i = 0; i < tokens.size(); ++i) std::printf(i ? " %d" : "%d", tokens[i]);
    std::printf("\n");
}

// What every mode needs: the model, its tokenizer if any, the prompt, the EOS ids.
struct session {
    std::unique_ptr<const kvdecode::transformer<float>> model;  // packed in the chosen storage type
    std::optional<kvdecode::tokenizer> tok;
    std::vector<token_id> prompt;
    std::vector<token_id> eos;
    bool text = false;  // print text (a tokenizer is loaded and --print-ids is off)
};

session open_session(const cli_options& o) {
    session s;
    s.model = std::make_unique<const kvdecode::transformer<float>>(kvdecode::read_llama2c_checkpoint<float>(o.model),
                                                                   o.weights);  // the row-major copy is dropped here
    if (!o.tokenizer.empty()) s.tok = kvdecode::tokenizer::read_llama2c(o.tokenizer, s.model->config().vocab_size);
    if (o.stats)
        std::fprintf(stderr, "weights: %s, %.2f MB read per token\n", std::string(kvdecode::to_string(o.weights)).c_str(),
                     static_cast<double>(s.model->weights().bytes_per_token()) / 1e6);
    s.prompt = o.prompt_ids ? *o.prompt_ids
               : o.prompt   ? s.tok->encode(*o.prompt)
                            : std::vector<token_id>{kvdecode::tokenizer::bos_id};
    s.eos = o.eos ? *o.eos : std::vector<token_id>{s.tok ? s.tok->eos() : 2};
    s.text = s.tok && !o.print_ids;
    return s;
}

int run_generate(const cli_options& o, session& s) {
    kvdecode::generation_options options{
        .max_new_tokens = o.max_new_tokens, .min_new_tokens = o.min_new_tokens, .eos = s.eos, .seed = o.seed};
    token_id previous = s.prompt.back();
    if (s.text) {  // stream the text as it is generated
        std::fputs(s.tok->decode(s.prompt).c_str(), stdout);
        options.on_token = [&](std::size_t, token_id t) {
            if (std::find(s.eos.begin(), s.eos.end(), t) == s.eos.end())
                std::fputs(s.tok->decode_token(previous, t).c_str(), stdout);
            std::fflush(stdout);
            previous = t;
            return true;
        };
    }
    const kvdecode::transformer<float>& model = *s.model;
    kvdecode::decode_context<float> ctx(model, {.threads = o.threads});
    const std::vector<std::vector<token_id>> prompts = {s.prompt};
    auto cache = model.make_cache(kvdecode::cache_options_for(model.config(), prompts, options));
    const auto result = kvdecode::generate(ctx, cache, prompts, options, make_sampler(o));
    if (s.text) std::fputs("\n", stdout);
    else
        for (const auto& seq : result.sequences) print_ids(seq.tokens);
    std::fflush(stdout);
    if (o.stats) {
        const auto& st = result.stats;
        const std::size_t decoded = st.generated_tokens > 0 ? st.generated_tokens - 1 : 0;  // the first comes from prefill
        std::fprintf(stderr,
                     "prompt tokens: %zu, generated tokens: %zu\n"
                     "prefill: %.1f tokens/s (%.3f s), decode: %.1f tokens/s (%.3f s)\n"
                     "forward calls: %zu, KV-cache blocks used at most: %zu of %zu (block size %zu)\n",
                     st.prompt_tokens, st.generated_tokens, st.prompt_tokens / std::max(st.prefill_seconds, 1e-9),
                     st.prefill_seconds, decoded / std::max(st.decode_seconds, 1e-9), st.decode_seconds, st.forward_calls,
                     st.peak_blocks_used, cache.stats().blocks_total, cache.block_size());
    }
    return 0;
}

int run_beam(const cli_options& o, session& s) {
    const kvdecode::beam_options options{.num_beams = o.num_beams,
                                         .num_return_sequences = o.num_return,
                                         .length_penalty = o.length_penalty,
                                         .early_stopping = o.early_stopping,
                                         .generation = {.max_new_tokens = o.max_new_tokens,
                                                        .min_new_tokens = o.min_new_tokens,
                                                        .eos = s.eos},
                                         .processors = search_processors(o)};
    const kvdecode::transformer<float>& model = *s.model;
    kvdecode::decode_context<float> ctx(model, {.threads = o.threads});
    const std::vector<std::vector<token_id>> prompts = {s.prompt};
    auto cache = model.make_cache(kvdecode::cache_options_for(model.config(), prompts, options));
    const auto start = std::chrono::steady_clock::now();
    const auto result = kvdecode::beam_search(ctx, cache, prompts, options);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (const auto& h : result.hypotheses[0]) {
        if (s.text) {
            std::printf("[%.6f] %s\n", h.score, s.tok->decode(h.tokens).c_str());
        } else {
            if (o.print_scores) std::printf("%.6f\t", h.score);
            print_ids(h.tokens);
        }
    }
    std::fflush(stdout);
    if (o.stats) {
        const auto& st = result.stats;
        std::fprintf(stderr,
                     "beams: %zu, steps: %zu, forward calls: %zu, %.3f s (%.1f steps/s, %.0f tokens/s)\n"
                     "KV bytes copied: %zu (at most %zu in one step), KV-cache blocks used at most: %zu\n",
                     o.num_beams, st.steps, st.forward_calls, seconds, st.steps / std::max(seconds, 1e-9),
                     static_cast<double>(st.steps * o.num_beams) / std::max(seconds, 1e-9),
                     st.kv_bytes_copied, st.max_kv_bytes_copied_per_step, st.peak_blocks_used);
    }
    return 0;
}

// The built-in rewards: token:ID, length, contains:TEXT — all over the generated part.
kvdecode::reward_function make_reward(const cli_options& o, const session& s) {
    const std::size_t prompt = s.prompt.size();
    if (o.reward == "length")
        return [prompt](std::span<const token_id> x) { return static_cast<double>(x.size() - prompt); };
    if (o.reward.rfind("token:", 0) == 0) {
        const auto id = static_cast<token_id>(parse_size("--reward token:ID", o.reward.substr(6)));
        if (static_cast<std::size_t>(id) >= s.model->config().vocab_size)
            throw usage_error("--reward token:" + std::to_string(id) + " is outside the vocabulary");
        return [prompt, id](std::span<const token_id> x) {
            return static_cast<double>(std::count(x.begin() + static_cast<std::ptrdiff_t>(prompt), x.end(), id));
        };
    }
    if (o.reward.rfind("contains:", 0) == 0) {
        if (!s.tok) throw usage_error("--reward contains:TEXT needs --tokenizer");
        const std::string text = o.reward.substr(9);
        const kvdecode::tokenizer* tok = &*s.tok;
        return [prompt, text, tok](std::span<const token_id> x) {
            return tok->decode(x.subspan(prompt)).find(text) != std::string::npos ? 1.0 : 0.0;
        };
    }
    throw usage_error("--reward must be token:ID, length or contains:TEXT, got '" + o.reward + "'");
}

int run_tree(const cli_options& o, session& s) {
    const kvdecode::tree_options options{.num_rollouts = o.rollouts,
                                         .lambda = o.lambda,
                                         .expansion_k = o.expansion_k,
                                         .mode = o.tree_mode,
                                         .c_puct = o.c_puct,
                                         .rollout_max_new_tokens = o.rollout_tokens,
                                         .rollout_temperature = o.temperature.value_or(0.8f),
                                         .rollout_top_k = o.top_k.value_or(50),
                                         .rollout_top_p = o.top_p.value_or(0.9f),
                                         .generation = {.max_new_tokens = o.max_new_tokens,
                                                        .min_new_tokens = o.min_new_tokens,
                                                        .eos = s.eos,
                                                        .seed = o.seed},
                                         .processors = search_processors(o),
                                         .rollouts_per_batch = o.rollouts_per_batch};
    const auto reward = make_reward(o, s);
    const kvdecode::transformer<float>& model = *s.model;
    kvdecode::decode_context<float> ctx(model, {.threads = o.threads});
    auto cache = model.make_cache(kvdecode::cache_options_for(model.config(), s.prompt, options));
    const auto start = std::chrono::steady_clock::now();
    const auto result = kvdecode::maxent_ts(ctx, cache, s.prompt, reward, options);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (s.text) std::printf("[reward %g] %s\n", result.reward, s.tok->decode(result.tokens).c_str());
    else print_ids(result.tokens);
    std::fflush(stdout);
    if (o.stats) {
        const auto& st = result.stats;
        std::fprintf(stderr,
                     "rollouts: %zu, nodes: %zu, max depth: %zu, root value: %.6f, best reward seen: %g\n"
                     "tokens computed: %zu, tokens served from shared cache: %zu, forward calls: %zu\n"
                     "KV-cache blocks used at most: %zu, %.3f s (%.0f tokens/s computed)\n",
                     st.rollouts, st.nodes, st.max_depth, result.root_value, result.best_reward, st.tokens_computed,
                     st.tokens_from_cache, st.forward_calls, st.peak_blocks_used, seconds,
                     static_cast<double>(st.tokens_computed) / std::max(seconds, 1e-9));
    }
    return 0;
}

int run(const cli_options& o) {
    session s = open_session(o);
    if (o.mode == "beam") return run_beam(o, s);
    if (o.mode == "tree") return run_tree(o, s);
    return run_generate(o, s);
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const auto options = parse(argc, argv);
        return options ? run(*options) : 0;
    } catch (const usage_error& e) {
        std::fprintf(stderr, "kvdecode-generate: %s\n", e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "kvdecode-generate: error: %s\n", e.what());
        return 1;
    }
}
