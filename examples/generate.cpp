// kvdecode-generate: decode a GGUF file or a llama2.c checkpoint from the command line.
//
//   kvdecode-generate --model model-q4_k_m.gguf --prompt "Once upon a time"
//   kvdecode-generate --model stories15M.bin --tokenizer tokenizer.bin --prompt "Once upon a time"
//   kvdecode-generate --model m.bin --prompt-ids 1,300,400 --mode sample --temperature 0.8 --top-p 0.9 --print-ids
//
// CLI11 reads the command line into cli_options, a plain struct; every number goes
// through our own parsers, which take decimal digits only and check the option's
// range (CLI11's own read " -1" as 2^64 - 1 and "010" as 8). The library's option
// structs are built from cli_options in one function each. Each mode is a function
// from the loaded model and the options to a result. Any error: one line on
// stderr, nothing on stdout, exit status 1.

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <iostream>
#include <optional>
#include <set>
#include <stdexcept>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <CLI/CLI.hpp>

#include <kvdecode/io/hf_model.hpp>
#include <kvdecode/io/chat_messages.hpp>
#include <kvdecode/io/gguf_tokenizer.hpp>
#include <kvdecode/io/hf_tokenizer.hpp>
#include <kvdecode/tokenizer/chat_template.hpp>
#include <kvdecode/tokenizer/any_tokenizer.hpp>
#include <kvdecode/tokenizer/text_stream.hpp>
#include <kvdecode/kvdecode.hpp>

#ifndef KVDECODE_DEFAULT_MODEL_DIR
#define KVDECODE_DEFAULT_MODEL_DIR "models"
#endif

namespace {

using kvdecode::token_id;

struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// The allowed values of a numeric option, said in --help and in its error.
template <class T>
struct range {
    T lo, hi;
    bool open_lo = false;  // (lo, hi] rather than [lo, hi]

    bool contains(T v) const { return (open_lo ? v > lo : v >= lo) && v <= hi; }  // false for NaN
    std::string text() const {
        if constexpr (std::is_integral_v<T>) {
            return std::to_string(lo) + " to " + std::to_string(hi);
        } else {
            char buf[64];
            std::snprintf(buf, sizeof buf, "%s%g, %g]", open_lo ? "(" : "[", static_cast<double>(lo), static_cast<double>(hi));
            return buf;
        }
    }
};

// Bounds that keep a typo from allocating gigabytes or running for days. No
// sequence can be longer than the longest context a checkpoint may have.
namespace bound {
constexpr std::size_t tokens = kvdecode::llama2c_limits{}.max_seq_len;
constexpr std::size_t vocabulary = kvdecode::llama2c_limits{}.max_vocab_size;
constexpr std::size_t threads = 256;
constexpr std::size_t beams = 64;        // the cache holds every beam's sequence
constexpr std::size_t rollouts = 4096;   // every tree node holds a cache block
constexpr std::size_t batch = 64;
constexpr std::size_t expansion_k = 64;
constexpr std::size_t logprobs = 20;     // OpenAI's top_logprobs limit
constexpr std::uint64_t max_token_id = static_cast<std::uint64_t>(std::numeric_limits<kvdecode::token_id>::max());
}  // namespace bound

constexpr range<std::size_t> token_count{0, bound::tokens};
constexpr range<double> positive_factor{0.001, 1000};  // temperature, repetition penalty, lambda
constexpr range<double> probability{0, 1, true};
constexpr range<std::uint64_t> any_id{0, bound::max_token_id};

enum class run_mode { greedy, sample, beam, tree };

// --reward: what MaxEnt-TS maximises, over the generated tokens.
struct reward_spec {
    enum class kind { length, token, contains } what = kind::length;
    token_id token = 0;  // kind::token: the id whose occurrences are counted
    std::string text;    // kind::contains
};

// Everything the command line says, as plain values.
struct cli_options {
    // model
    std::string model;
    std::string tokenizer;
    std::size_t threads = 1;
    std::optional<kvdecode::weight_type> weights;  // llama2.c only; default f32
    kvdecode::kv_type kv_type = kvdecode::kv_type::f32;
    // generation
    std::optional<std::string> prompt;
    std::optional<std::vector<token_id>> prompt_ids;
    run_mode mode = run_mode::greedy;
    std::size_t max_new_tokens = 128;
    std::size_t min_new_tokens = 0;
    std::optional<std::vector<token_id>> eos;
    std::vector<std::string> stop;          // stop strings (need a vocabulary)
    std::optional<std::size_t> logprobs;    // greedy/sample: print each token's log-probability and K alternatives
    std::set<std::string> given;            // the options the command line set (a folder's generation_config fills the rest)
    // chat
    bool chat = false;                          // render a conversation with the chat template and reply
    std::optional<std::string> chat_template;   // a family name instead of the model's template
    std::optional<std::string> system;          // the system message
    std::optional<std::string> messages_file;   // a JSON conversation
    // sampling
    std::optional<float> temperature;      // default 1 (tree rollouts: 0.8)
    std::optional<std::size_t> top_k;      // default off (tree rollouts: 50)
    std::optional<float> top_p;            // default 1 (tree rollouts: 0.9)
    float min_p = 0.0f;
    float repetition_penalty = 1.0f;
    std::size_t no_repeat_ngram = 0;  // 0: off
    std::uint64_t seed = 0;
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
    reward_spec reward;
    // output
    bool print_ids = false;
    bool print_scores = false;
    bool stats = false;
};

[[noreturn]] void out_of_range(const std::string& option, const std::string& text, const std::string& allowed) {
    throw usage_error(option + ": " + text + " is outside the allowed range " + allowed);
}

bool all_digits(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Decimal digits only: no sign, space or base prefix. A negative or too large
// number is named as out of range, anything else as not a number.
template <class T>
T parse_integer(const std::string& option, const std::string& text, const range<T>& allowed) {
    if (!all_digits(text)) {
        if (text.size() > 1 && text[0] == '-' && all_digits(std::string_view(text).substr(1)))
            out_of_range(option, text, allowed.text());
        throw usage_error(option + " expects an integer from " + allowed.text() + ", got '" + text + "'");
    }
    T v{};
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || end != text.data() + text.size() || !allowed.contains(v))
        out_of_range(option, text, allowed.text());
    return v;
}

// A finite decimal number in the range (inf and nan are read, then refused by it).
double parse_real(const std::string& option, const std::string& text, const range<double>& allowed) {
    double v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || ec == std::errc::invalid_argument || end != text.data() + text.size())
        throw usage_error(option + " expects a number in " + allowed.text() + ", got '" + text + "'");
    if (ec != std::errc() || !allowed.contains(v)) out_of_range(option, text, allowed.text());
    return v;
}

std::vector<token_id> parse_ids(const std::string& option, const std::string& text) {
    std::vector<token_id> ids;
    for (std::size_t start = 0; start <= text.size();) {
        const std::size_t comma = std::min(text.find(',', start), text.size());
        ids.push_back(static_cast<token_id>(parse_integer(option, text.substr(start, comma - start), any_id)));
        start = comma + 1;
    }
    return ids;
}

run_mode parse_mode(const std::string& v) {
    if (v == "greedy") return run_mode::greedy;
    if (v == "sample") return run_mode::sample;
    if (v == "beam") return run_mode::beam;
    if (v == "tree") return run_mode::tree;
    throw usage_error("--mode must be greedy, sample, beam or tree, got '" + v + "'");
}

kvdecode::beam_stopping parse_early_stopping(const std::string& v) {
    if (v == "true") return kvdecode::beam_stopping::when_full;
    if (v == "false") return kvdecode::beam_stopping::heuristic;
    if (v == "never") return kvdecode::beam_stopping::never;
    throw usage_error("--early-stopping must be true, false or never, got '" + v + "'");
}

// The cache a decoder's sizing asks for, in the storage type --kv-type chose.
kvdecode::kv_cache_options with_kv_type(const cli_options& o, kvdecode::kv_cache_options c) {
    c.storage = o.kv_type;
    return c;
}

kvdecode::kv_type parse_kv_type(const std::string& v) {
    try {
        return kvdecode::parse_kv_type(v);
    } catch (const std::invalid_argument&) {
        throw usage_error("--kv-type must be f32, f16 or bf16, got '" + v + "'");
    }
}

kvdecode::weight_type parse_weights(const std::string& v) {
    try {
        return kvdecode::parse_weight_type(v);
    } catch (const std::invalid_argument&) {
        throw usage_error("--weights must be one of " + kvdecode::weight_type_names() + ", got '" + v + "'");
    }
}

kvdecode::tree_mode parse_tree_mode(const std::string& v) {
    if (v == "sample") return kvdecode::tree_mode::sample;
    if (v == "search") return kvdecode::tree_mode::search;
    throw usage_error("--tree-mode must be sample or search, got '" + v + "'");
}

reward_spec parse_reward(const std::string& v) {
    reward_spec r;
    if (v == "length") return r;
    if (v.rfind("token:", 0) == 0) {
        r.what = reward_spec::kind::token;
        r.token = static_cast<token_id>(parse_integer("--reward token:ID", v.substr(6), any_id));
        return r;
    }
    if (v.rfind("contains:", 0) == 0) {
        r.what = reward_spec::kind::contains;
        r.text = v.substr(9);
        return r;
    }
    throw usage_error("--reward must be token:ID, length or contains:TEXT, got '" + v + "'");
}

// Adds options to one --help group of a CLI11 app. Each takes its value as text
// and converts it with the parsers above; a repeated option keeps its last value.
class option_group {
public:
    option_group(CLI::App& app, std::string name) : app_(app), name_(std::move(name)) {}

    void text(const std::string& flag, std::function<void(const std::string&)> set, const std::string& type,
              const std::string& help) {
        app_.add_option_function<std::string>(flag, std::move(set), help)
            ->type_name(type)
            ->group(name_)
            ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    }

    // An option that may be given several times, each value one item.
    void texts(const std::string& flag, std::function<void(const std::vector<std::string>&)> set, const std::string& type,
               const std::string& help) {
        app_.add_option_function<std::vector<std::string>>(flag, std::move(set), help)
            ->type_name(type)
            ->group(name_)
            ->expected(1)
            ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    }

    // `shown` says the default; without it, the target's value is.
    template <class T, class U>
    void integer(const std::string& flag, U& target, const range<T>& allowed, const std::string& help,
                 std::string shown = "") {
        if constexpr (std::is_integral_v<U>)
            if (shown.empty()) shown = "default " + std::to_string(target);
        text(flag, [&target, flag, allowed](const std::string& v) { target = parse_integer(flag, v, allowed); }, "N",
             help + " (" + allowed.text() + "; " + shown + ")");
    }

    template <class U>
    void real(const std::string& flag, U& target, const range<double>& allowed, const std::string& help,
              const std::string& shown) {
        text(flag, [&target, flag, allowed](const std::string& v) { target = static_cast<typename value<U>::type>(parse_real(flag, v, allowed)); },
             "X", help + " (" + allowed.text() + "; " + shown + ")");
    }

    void flag(const std::string& name, bool& target, const std::string& help) {
        app_.add_flag(name, target, help)->group(name_);
    }

private:
    template <class U>
    struct value {
        using type = U;
    };
    template <class U>
    struct value<std::optional<U>> {
        using type = U;
    };

    CLI::App& app_;
    std::string name_;
};

void add_options(CLI::App& app, cli_options& o) {
    option_group model(app, "Model");
    model.text("--model", [&](const std::string& v) { o.model = v; }, "PATH",
               "GGUF file (weights and vocabulary), Hugging Face model folder (config.json, safetensors) or "
               "llama2.c checkpoint (default: the shipped models/kjv_llama.bin and its tokenizer)");
    model.text("--tokenizer", [&](const std::string& v) { o.tokenizer = v; }, "PATH",
               "llama2.c tokenizer, for a llama2.c checkpoint: needed for --prompt and for text output");
    model.integer("--threads", o.threads, range<std::size_t>{1, bound::threads}, "threads for the model's matrix products");
    model.text("--weights", [&](const std::string& v) { o.weights = parse_weights(v); }, "TYPE",
               "a llama2.c checkpoint's weights converted at load to f32 (default), f16, bf16, q8_0, q4_0, q4_1, "
               "q5_0, q5_1 or a K-quant q2_k..q6_k (rows of 256); a GGUF file keeps its own types");
    model.text("--kv-type", [&](const std::string& v) { o.kv_type = parse_kv_type(v); }, "TYPE",
               "KV cache storage: f32 (default), f16 or bf16 (half the bytes, rounded once when written)");

    option_group gen(app, "Generation");
    gen.text("--prompt", [&](const std::string& v) { o.prompt = v; }, "TEXT",
             "prompt text (BOS is added where the vocabulary says so)");
    gen.text("--prompt-ids", [&](const std::string& v) { o.prompt_ids = parse_ids("--prompt-ids", v); }, "ID,...",
             "prompt token ids, each " + any_id.text() + " (BOS is not added)");
    gen.text("--mode", [&](const std::string& v) { o.mode = parse_mode(v); }, "MODE",
             "greedy | sample | beam | tree (default greedy)");
    gen.integer("--max-new-tokens", o.max_new_tokens, token_count, "tokens to generate at most; the depth limit in tree mode");
    gen.integer("--min-new-tokens", o.min_new_tokens, token_count, "EOS is not chosen before this many tokens");
    gen.text("--eos", [&](const std::string& v) { o.eos = parse_ids("--eos", v); }, "ID,...",
             "end-of-sequence ids (default: a model folder's generation_config.json, else the tokenizer's, else 2)");
    gen.texts("--stop", [&](const std::vector<std::string>& all) {
                 for (const std::string& v : all)
                     if (v.empty()) throw usage_error("--stop needs a non-empty text");
                 o.stop = all;
             }, "TEXT",
             "stop when the generated text contains TEXT, which is not printed (repeatable; greedy and sample modes)");
    gen.integer("--logprobs", o.logprobs, range<std::size_t>{0, bound::logprobs},
                "after the text, each generated token's log-probability and its K most likely alternatives "
                "(greedy and sample modes)", "default: off");

    option_group chat(app, "Chat (greedy and sample modes): the model's chat template, rendered as transformers renders it");
    chat.flag("--chat", o.chat,
              "reply as the assistant: to --prompt (the user's message), to the conversation in --messages, or, "
              "with neither, to each line read from stdin, keeping the conversation in the cache between turns");
    chat.text("--chat-template", [&](const std::string& v) { o.chat_template = v; }, "NAME",
              "render with this family instead of the model's template: " + kvdecode::chat_format_choices());
    chat.text("--system", [&](const std::string& v) { o.system = v; }, "TEXT", "the system message");
    chat.text("--messages", [&](const std::string& v) { o.messages_file = v; }, "PATH",
              "a JSON conversation: [{\"role\": \"user\", \"content\": \"...\"}, ...]");

    option_group sampling(app, "Sampling (--mode sample, and tree mode's rollouts)");
    sampling.real("--temperature", o.temperature, positive_factor, "sampling temperature", "default 1; tree rollouts 0.8");
    sampling.integer("--top-k", o.top_k, range<std::size_t>{0, bound::vocabulary}, "keep the K most likely tokens",
                     "default 0: off; tree rollouts 50");
    sampling.real("--top-p", o.top_p, probability, "keep the most likely tokens reaching mass P", "default 1; tree rollouts 0.9");
    sampling.real("--min-p", o.min_p, range<double>{0, 1}, "drop tokens below P times the best token's probability", "default 0");
    sampling.real("--repetition-penalty", o.repetition_penalty, positive_factor,
                  "Hugging Face's repetition penalty, also in beam mode", "default 1: off");
    sampling.integer("--no-repeat-ngram", o.no_repeat_ngram, token_count, "forbid repeating any N-gram, also in beam mode",
                     "default 0: off");
    sampling.integer("--seed", o.seed, range<std::uint64_t>{0, std::numeric_limits<std::uint64_t>::max()}, "sampling seed");

    option_group beam(app, "Beam search (--mode beam), with the semantics of Hugging Face transformers");
    beam.integer("--num-beams", o.num_beams, range<std::size_t>{1, bound::beams}, "beams per prompt");
    beam.integer("--num-return", o.num_return, range<std::size_t>{1, bound::beams},
                 "hypotheses to print, best first, at most --num-beams");
    beam.real("--length-penalty", o.length_penalty, range<double>{-10, 10}, "score = sum of log-probs / length^X", "default 1");
    beam.text("--early-stopping", [&](const std::string& v) { o.early_stopping = parse_early_stopping(v); }, "MODE",
              "true | false | never, as transformers' early_stopping (default false)");

    option_group tree(app, "MaxEnt-TS tree search (--mode tree): samples from p(x) exp(lambda r(x)), or searches for its mode");
    tree.text("--reward", [&](const std::string& v) { o.reward = parse_reward(v); }, "R",
              "token:ID (count of ID), length (generated tokens) or contains:TEXT (1 if the generated text "
              "has TEXT; needs --tokenizer); default length");
    tree.integer("--rollouts", o.rollouts, range<std::size_t>{1, bound::rollouts}, "rollouts per search");
    tree.real("--lambda", o.lambda, positive_factor, "reward weight", "default 1");
    tree.integer("--expansion-k", o.expansion_k, range<std::size_t>{1, bound::expansion_k}, "children per expanded node");
    tree.integer("--rollout-tokens", o.rollout_tokens, token_count,
                 "tokens sampled per rollout at most");
    tree.text("--tree-mode", [&](const std::string& v) { o.tree_mode = parse_tree_mode(v); }, "MODE",
              "sample | search: sample the tilted distribution or search its mode (default sample)");
    tree.integer("--rollouts-per-batch", o.rollouts_per_batch, range<std::size_t>{1, bound::batch},
                 "rollouts generated together");
    tree.real("--c-puct", o.c_puct, range<double>{0, 1000}, "search mode's exploration weight", "default 1");

    option_group output(app, "Output");
    output.flag("--print-ids", o.print_ids, "print each returned sequence's ids (prompt included) instead of text");
    output.flag("--print-scores", o.print_scores, "beam mode with --print-ids: each line starts with the score and a tab");
    output.flag("--stats", o.stats, "print token counts, speed and KV-cache use to stderr (tree mode: the tree's)");
}

// Whether the file starts with GGUF's magic (anything else is read as llama2.c).
bool is_gguf(const std::string& path) {
    char magic[4] = {};
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) return false;  // the reader reports why
    const bool gguf = std::fread(magic, 1, 4, f) == 4 && std::string_view(magic, 4) == "GGUF";
    std::fclose(f);
    return gguf;
}

// Checks between options, and the defaults that depend on others.
void complete(cli_options& o) {
    if (o.model.empty()) {  // the model the project trains and ships
        o.model = std::string(KVDECODE_DEFAULT_MODEL_DIR) + "/kjv_llama.bin";
        if (o.tokenizer.empty()) o.tokenizer = std::string(KVDECODE_DEFAULT_MODEL_DIR) + "/kjv_tok1024.bin";
    }
    if (o.prompt && o.prompt_ids) throw usage_error("give --prompt or --prompt-ids, not both");
    const bool has_vocabulary = is_gguf(o.model) || std::filesystem::is_directory(o.model);
    if (o.prompt && o.tokenizer.empty() && !has_vocabulary)
        throw usage_error("--prompt needs --tokenizer (or use --prompt-ids)");
    if (o.reward.what == reward_spec::kind::contains && o.tokenizer.empty() && !has_vocabulary)
        throw usage_error("--reward contains:TEXT needs --tokenizer");
}

// The processors the flags ask for, in Hugging Face's order.
kvdecode::sampler make_sampler(const cli_options& o) {
    auto s = o.mode == run_mode::sample ? kvdecode::sampler::sampling() : kvdecode::sampler::greedy();
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
    std::optional<kvdecode::any_tokenizer> tok;
    std::vector<token_id> prompt;
    std::vector<token_id> eos;
    bool text = false;  // print text (a tokenizer is loaded and --print-ids is off)
    std::optional<kvdecode::hf_generation_config> generation;  // a model folder's generation_config.json
    std::string chat_template;  // the Jinja template the model came with (tokenizer_config.json, GGUF), or empty
};

// "q5_0 x23, q4_k x2, q8_0 x3": the storage types of a GGUF file's matrices.
std::string matrix_types(const kvdecode::gguf_file& file) {
    std::vector<std::pair<std::string, std::size_t>> counts;
    for (const auto& t : file.tensors()) {
        if (t.shape.size() < 2) continue;
        const auto type = kvdecode::weight_type_of(t.type);  // our lowercase names where we have the type
        const std::string name = type ? std::string(kvdecode::to_string(*type)) : std::string(kvdecode::to_string(t.type));
        auto it = std::find_if(counts.begin(), counts.end(), [&](const auto& c) { return c.first == name; });
        if (it == counts.end()) counts.emplace_back(name, 1);
        else ++it->second;
    }
    std::string out;
    for (const auto& [name, n] : counts) out += (out.empty() ? "" : ", ") + name + " x" + std::to_string(n);
    return out;
}

session open_session(const cli_options& o) {
    session s;
    std::string types;
    std::optional<token_id> bos = kvdecode::tokenizer::bos_id, eos = kvdecode::tokenizer::eos_id;
    std::string no_vocabulary = "--prompt needs --tokenizer (or use --prompt-ids)";
    std::vector<token_id> folder_eos;  // a model folder's EOS ids: generation_config.json's, else config.json's
    if (is_gguf(o.model)) {
        if (o.weights)
            throw usage_error("--weights converts llama2.c checkpoints; a GGUF file's weights are used as stored "
                              "(kvdecode-quantize converts GGUF files)");
        if (!o.tokenizer.empty()) throw usage_error("--tokenizer is for llama2.c checkpoints; a GGUF file holds its vocabulary");
        const auto file = kvdecode::gguf_file::open(o.model);
        s.model = std::make_unique<const kvdecode::transformer<float>>(kvdecode::load_gguf_model(file));
        const kvdecode::gguf_token_ids ids = kvdecode::gguf_special_tokens(file);
        bos = ids.bos, eos = ids.eos;
        try {
            s.tok = kvdecode::gguf_tokenizer(file);  // tokenizer.huggingface.json, or the llama / gpt2 arrays
        } catch (const kvdecode::model_format_error& e) {  // no vocabulary, or one kvdecode cannot read: ids still work
            no_vocabulary = std::string("--prompt needs the file's vocabulary, which kvdecode cannot read: ") + e.what() +
                            " (use --prompt-ids)";
        }
        types = matrix_types(file);
        s.chat_template = file.find_string("tokenizer.chat_template").value_or("");
    } else if (std::filesystem::is_directory(o.model)) {
        if (o.weights)
            throw usage_error("--weights converts llama2.c checkpoints; a model folder's weights are used as stored "
                              "(kvdecode-quantize converts folders)");
        if (!o.tokenizer.empty()) throw usage_error("--tokenizer is for llama2.c checkpoints; a model folder has its own");
        const kvdecode::hf_folder folder = kvdecode::read_hf_folder(o.model);
        const kvdecode::hf_weight_files files = kvdecode::hf_weight_files::open(o.model);
        s.model = std::make_unique<const kvdecode::transformer<float>>(std::make_shared<const kvdecode::packed_weights<float>>(
            kvdecode::hf_stored_weights(folder.config, files)));
        bos = folder.config.bos, eos = std::nullopt;
        std::vector<token_id> eos_ids = folder.config.eos;
        if (folder.generation) {
            if (folder.generation->bos) bos = folder.generation->bos;
            if (!folder.generation->eos.empty()) eos_ids = folder.generation->eos;
        }
        if (!eos_ids.empty()) eos = eos_ids.front();
        folder_eos = eos_ids;
        if (std::filesystem::exists(std::filesystem::path(o.model) / "tokenizer.json")) {
            kvdecode::hf_tokenizer tok = kvdecode::read_hf_tokenizer(o.model);
            s.chat_template = tok.chat_template().value_or("");
            s.tok = std::move(tok);
        }
        else
            no_vocabulary = "--prompt needs the folder's tokenizer.json, which it does not have (use --prompt-ids)";
        s.generation = folder.generation;
        types = "as stored (" + (folder.config.dtype.empty() ? std::string("see config.json") : folder.config.dtype) + ")";
    } else {
        const kvdecode::weight_type type = o.weights.value_or(kvdecode::weight_type::f32);
        s.model = std::make_unique<const kvdecode::transformer<float>>(kvdecode::read_llama2c_checkpoint<float>(o.model),
                                                                       type);  // the row-major copy is dropped here
        if (!o.tokenizer.empty()) s.tok = kvdecode::tokenizer::read_llama2c(o.tokenizer, s.model->config().vocab_size);
        types = std::string(kvdecode::to_string(type));
    }
    if (o.stats)
        std::fprintf(stderr, "weights: %s, %.2f MB read per token\n", types.c_str(),
                     static_cast<double>(s.model->weights().bytes_per_token()) / 1e6);
    if (o.prompt && !s.tok) throw usage_error(no_vocabulary);
    if (s.tok) bos = s.tok->find_bos(), eos = s.tok->find_eos();
    if (o.chat) {
        if (o.prompt_ids) throw usage_error("--chat takes the user's message as --prompt TEXT, not --prompt-ids");
    }  // the conversation, rendered by run_chat, is the prompt
    else if (o.prompt_ids) s.prompt = *o.prompt_ids;
    else if (o.prompt) s.prompt = s.tok->encode(*o.prompt);
    else if (bos) s.prompt = {*bos};
    else throw usage_error("the model names no BOS token to start from: give --prompt or --prompt-ids");
    if (s.prompt.empty() && !o.chat)
        throw usage_error("the prompt encodes to no tokens (the vocabulary adds no BOS): give a longer --prompt");
    if (o.eos) s.eos = *o.eos;
    else if (!folder_eos.empty()) s.eos = folder_eos;  // generation_config.json's, as transformers' generate()
    else if (s.tok) s.eos = s.tok->end_of_generation();
    else if (eos) s.eos = {*eos};
    s.text = s.tok && !o.print_ids;
    return s;
}

// The library's options, from the command line's: one function per decoder.
kvdecode::generation_options generation_options_for(const cli_options& o, const session& s) {
    return {.max_new_tokens = o.max_new_tokens, .min_new_tokens = o.min_new_tokens, .eos = s.eos, .seed = o.seed};
}

kvdecode::beam_options beam_options_for(const cli_options& o, const session& s) {
    return {.num_beams = o.num_beams,
            .num_return_sequences = o.num_return,
            .length_penalty = o.length_penalty,
            .early_stopping = o.early_stopping,
            .generation = {.max_new_tokens = o.max_new_tokens, .min_new_tokens = o.min_new_tokens, .eos = s.eos},
            .processors = search_processors(o)};
}

kvdecode::tree_options tree_options_for(const cli_options& o, const session& s) {
    return {.num_rollouts = o.rollouts,
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
}

// A token's text as a quoted, escaped string (special tokens shown), or its id alone
// without a vocabulary.
std::string quoted_piece(const session& s, token_id t) {
    if (!s.tok) return "#" + std::to_string(t);
    const std::string text = s.tok->decode(std::span<const token_id>(&t, 1), {.special = true});
    std::string out = "\"";
    for (unsigned char c : text) {
        if (c == '"' || c == '\\') out += '\\', out += static_cast<char>(c);
        else if (c == '\n') out += "\\n";
        else if (c == '\t') out += "\\t";
        else if (c < 0x20) out += "\\x" + std::string(1, "0123456789abcdef"[c >> 4]) + "0123456789abcdef"[c & 15];
        else out += static_cast<char>(c);
    }
    return out + "\"";
}

// --logprobs: one line per generated token: its position, id, text and
// log-probability, then the alternatives as id text log-probability, best first.
void print_logprobs(const kvdecode::generated_sequence& seq, const session& s) {
    for (std::size_t i = 0; i < seq.logprobs.size(); ++i) {
        const kvdecode::token_logprob chosen = seq.logprobs[i];
        std::printf("logprobs %zu: %d %s %.6f", i, chosen.token, quoted_piece(s, chosen.token).c_str(), chosen.logprob);
        const auto top = seq.top_logprobs_at(i);
        if (!top.empty()) std::printf(" |");
        for (const kvdecode::token_logprob& t : top)
            if (t.token >= 0) std::printf(" %d %s %.6f", t.token, quoted_piece(s, t.token).c_str(), t.logprob);
        std::printf("\n");
    }
}

int run_generate(const cli_options& o, session& s) {
    kvdecode::generation_options options = generation_options_for(o, s);
    // Text is streamed as it becomes final (whole characters; nothing that may still be
    // the start of a --stop text). The prompt goes out with the first token, once the
    // decoder has accepted it: an error leaves stdout empty.
    bool prompt_shown = false;
    auto show_prompt = [&] {
        if (!prompt_shown && s.text) std::fputs(s.tok->decode(s.prompt).c_str(), stdout);
        prompt_shown = true;
    };
    std::optional<kvdecode::text_stream<kvdecode::any_tokenizer>> stream;
    if (s.tok) stream.emplace(*s.tok, kvdecode::text_stream_options{.stop = o.stop, .previous = s.prompt.back()});
    if (s.text || !o.stop.empty()) {
        options.on_token = [&](std::size_t, token_id t) {
            show_prompt();
            if (std::find(s.eos.begin(), s.eos.end(), t) != s.eos.end()) return true;  // EOS is not shown
            const std::string text = stream->push(t);
            if (s.text) {
                std::fputs(text.c_str(), stdout);
                std::fflush(stdout);
            }
            return !stream->stopped();
        };
    }
    if (o.logprobs) options.logprobs = *o.logprobs;
    const kvdecode::transformer<float>& model = *s.model;
    kvdecode::decode_context<float> ctx(model, {.threads = o.threads});
    const std::vector<std::vector<token_id>> prompts = {s.prompt};
    auto cache = model.make_cache(with_kv_type(o, kvdecode::cache_options_for(model.config(), prompts, options)));
    const auto result = kvdecode::generate(ctx, cache, prompts, options, make_sampler(o));
    if (s.text) {
        show_prompt();
        std::fputs((stream->finish() + "\n").c_str(), stdout);
    } else {
        for (const auto& seq : result.sequences) print_ids(seq.tokens);
    }
    if (o.logprobs) print_logprobs(result.sequences[0], s);
    std::fflush(stdout);
    if (o.stats) {
        const auto& st = result.stats;
        const std::size_t decoded = st.generated_tokens > 0 ? st.generated_tokens - 1 : 0;  // the first comes from prefill
        std::fprintf(stderr,
                     "prompt tokens: %zu, generated tokens: %zu\n"
                     "prefill: %.1f tokens/s (%.3f s), decode: %.1f tokens/s (%.3f s)\n"
                     "forward calls: %zu, KV-cache blocks used at most: %zu of %zu (block size %zu, %s)\n",
                     st.prompt_tokens, st.generated_tokens, st.prompt_tokens / std::max(st.prefill_seconds, 1e-9),
                     st.prefill_seconds, decoded / std::max(st.decode_seconds, 1e-9), st.decode_seconds, st.forward_calls,
                     st.peak_blocks_used, cache.stats().blocks_total, cache.block_size(),
                     std::string(kvdecode::to_string(cache.storage())).c_str());
    }
    return 0;
}

int run_beam(const cli_options& o, session& s) {
    const kvdecode::beam_options options = beam_options_for(o, s);
    const kvdecode::transformer<float>& model = *s.model;
    kvdecode::decode_context<float> ctx(model, {.threads = o.threads});
    const std::vector<std::vector<token_id>> prompts = {s.prompt};
    auto cache = model.make_cache(with_kv_type(o, kvdecode::cache_options_for(model.config(), prompts, options)));
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
    switch (o.reward.what) {
        case reward_spec::kind::length:
            return [prompt](std::span<const token_id> x) { return static_cast<double>(x.size() - prompt); };
        case reward_spec::kind::token: {
            const token_id id = o.reward.token;
            const std::size_t vocab = s.model->config().vocab_size;
            if (static_cast<std::size_t>(id) >= vocab)
                throw usage_error("--reward token:" + std::to_string(id) + " is outside the vocabulary (0 to " +
                                  std::to_string(vocab - 1) + ")");
            return [prompt, id](std::span<const token_id> x) {
                return static_cast<double>(std::count(x.begin() + static_cast<std::ptrdiff_t>(prompt), x.end(), id));
            };
        }
        case reward_spec::kind::contains: {
            if (!s.tok) throw usage_error("--reward contains:TEXT needs the model's vocabulary");
            const std::string text = o.reward.text;
            const kvdecode::any_tokenizer* tok = &*s.tok;
            return [prompt, text, tok](std::span<const token_id> x) {
                return tok->decode(x.subspan(prompt)).find(text) != std::string::npos ? 1.0 : 0.0;
            };
        }
    }
    throw std::logic_error("unknown reward kind");
}

int run_tree(const cli_options& o, session& s) {
    const kvdecode::tree_options options = tree_options_for(o, s);
    const auto reward = make_reward(o, s);
    const kvdecode::transformer<float>& model = *s.model;
    kvdecode::decode_context<float> ctx(model, {.threads = o.threads});
    auto cache = model.make_cache(with_kv_type(o, kvdecode::cache_options_for(model.config(), s.prompt, options)));
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

// A model folder's generation_config.json fills in what the command line left unset,
// as transformers' generate() starts from it: do_sample (sample mode), num_beams (beam
// mode), temperature, top_k, top_p, min_p, repetition_penalty, max_new_tokens (or
// max_length less the prompt), min_new_tokens, length_penalty, early_stopping.
cli_options with_generation_defaults(cli_options o, const session& s) {
    if (!s.generation) return o;
    const kvdecode::hf_generation_config& g = *s.generation;
    auto unset = [&](const char* flag) { return !o.given.contains(flag); };
    if (unset("--mode")) {
        if (g.do_sample.value_or(false)) o.mode = run_mode::sample;
        else if (g.num_beams.value_or(1) > 1) o.mode = run_mode::beam;
    }
    if (unset("--num-beams") && g.num_beams && *g.num_beams > 1) o.num_beams = std::min(*g.num_beams, bound::beams);
    if (unset("--temperature") && g.temperature && *g.temperature > 0) o.temperature = static_cast<float>(*g.temperature);
    if (unset("--top-k") && g.top_k) o.top_k = *g.top_k;
    if (unset("--top-p") && g.top_p) o.top_p = static_cast<float>(*g.top_p);
    if (unset("--min-p") && g.min_p) o.min_p = static_cast<float>(*g.min_p);
    if (unset("--repetition-penalty") && g.repetition_penalty && *g.repetition_penalty > 0)
        o.repetition_penalty = static_cast<float>(*g.repetition_penalty);
    if (unset("--max-new-tokens")) {
        if (g.max_new_tokens) o.max_new_tokens = std::min(*g.max_new_tokens, bound::tokens);
        else if (g.max_length && *g.max_length > s.prompt.size()) o.max_new_tokens = std::min(*g.max_length - s.prompt.size(), bound::tokens);
    }
    if (unset("--min-new-tokens") && g.min_new_tokens) o.min_new_tokens = std::min(*g.min_new_tokens, o.max_new_tokens);
    if (unset("--length-penalty") && g.length_penalty) o.length_penalty = *g.length_penalty;
    if (unset("--early-stopping") && g.early_stopping) o.early_stopping = parse_early_stopping(*g.early_stopping);
    return o;
}

// --chat: the family of the model's chat template (or --chat-template's) and the
// settings it carries; the tokenizer's BOS and EOS texts for the templates that write them.
struct chat_setup {
    kvdecode::chat_format format = kvdecode::chat_format::chatml;
    kvdecode::chat_render_options render;
};

chat_setup chat_setup_for(const cli_options& o, const session& s) {
    if (!s.tok) throw usage_error("--chat needs the model's vocabulary");
    chat_setup c;
    const std::string& jinja = s.chat_template;
    if (o.chat_template) {
        const auto named = kvdecode::parse_chat_format(*o.chat_template);
        if (!named)
            throw usage_error("--chat-template must be one of " + kvdecode::chat_format_choices() + ", got '" +
                              *o.chat_template + "'");
        c.format = *named;
    } else if (jinja.empty()) {
        throw usage_error("--chat: the model has no chat template; name its family with --chat-template (" +
                          kvdecode::chat_format_choices() + ")");
    } else if (const auto recognized = kvdecode::recognize_chat_template(jinja)) {
        c.format = *recognized;
    } else {
        throw usage_error("--chat: the model's chat template is none of the families kvdecode renders exactly; "
                          "name one with --chat-template (" + kvdecode::chat_format_choices() + ")");
    }
    if (!jinja.empty()) c.render = kvdecode::chat_options_from_template(jinja);
    c.render.add_generation_prompt = true;
    if (const auto bos = s.tok->find_bos()) c.render.bos_token = std::string(s.tok->piece(*bos));
    if (const auto eos = s.tok->find_eos()) c.render.eos_token = std::string(s.tok->piece(*eos));
    return c;
}

// The conversation is one cache sequence for the whole session. Each turn renders the
// whole conversation; where it begins with the text already in the cache (every turn
// of the template families here, unless a reply changed under the template's
// trimming), only the new part is encoded and run, after the reply's last token;
// otherwise the conversation is run again from the start.
int run_chat(const cli_options& o, session& s) {
    const chat_setup chat = chat_setup_for(o, s);
    std::vector<kvdecode::chat_message> messages;
    if (o.messages_file) messages = kvdecode::read_chat_messages(*o.messages_file);
    if (o.system) {
        if (!messages.empty() && messages.front().role == "system")
            throw usage_error("--system: the conversation in --messages already starts with a system message");
        messages.insert(messages.begin(), {"system", *o.system});
    }
    if (o.prompt) messages.push_back({"user", *o.prompt});
    const bool interactive = !o.prompt && !o.messages_file;

    const kvdecode::any_tokenizer& tok = *s.tok;
    const kvdecode::transformer<float>& model = *s.model;
    kvdecode::decode_context<float> ctx(model, {.threads = o.threads});
    auto cache = model.make_cache(with_kv_type(o, {.capacity_tokens = model.config().seq_len, .max_sequences = 1}));
    const kvdecode::seq_id conversation = cache.create();
    std::string in_cache;             // the text the cache holds, with the last reply's last token
    std::vector<token_id> unfed;      // that token: generated, not run through the model yet
    const kvdecode::encode_options as_rendered{.add_special = false, .parse_special = true};  // as apply_chat_template

    auto reply = [&] {
        const std::string full = kvdecode::render_chat(chat.format, messages, chat.render);
        std::vector<token_id> next;
        if (!in_cache.empty() && full.starts_with(in_cache)) {
            next = unfed;
            const auto more = tok.encode(std::string_view(full).substr(in_cache.size()), as_rendered);
            next.insert(next.end(), more.begin(), more.end());
        } else {
            cache.truncate(conversation, 0);
            next = tok.encode(full, as_rendered);
        }
        if (next.empty()) throw usage_error("--chat: the conversation renders to no tokens");
        kvdecode::generation_options options = generation_options_for(o, s);
        kvdecode::text_stream<kvdecode::any_tokenizer> stream(tok, {.stop = o.stop, .previous = next.back()});
        options.on_token = [&](std::size_t, token_id t) {
            if (std::find(s.eos.begin(), s.eos.end(), t) != s.eos.end()) return true;
            const std::string text = stream.push(t);
            if (!o.print_ids) std::fputs(text.c_str(), stdout);
            std::fflush(stdout);
            return !stream.stopped();
        };
        const auto result = kvdecode::continue_generation(ctx, cache, std::vector{conversation},
                                                          std::vector<std::vector<token_id>>{next}, options, make_sampler(o));
        const auto generated = result.sequences[0].generated();
        if (o.print_ids) print_ids(generated);
        else std::fputs((stream.finish() + "\n").c_str(), stdout);
        std::fflush(stdout);
        std::vector<token_id> content(generated.begin(), generated.end());
        if (!content.empty() && std::find(s.eos.begin(), s.eos.end(), content.back()) != s.eos.end()) content.pop_back();
        in_cache = full + tok.decode(generated, {.special = true});
        unfed.assign(generated.empty() ? generated.end() : generated.end() - 1, generated.end());
        if (generated.empty()) in_cache.clear();  // nothing generated: start over next time
        messages.push_back({"assistant", tok.decode(content)});
    };

    if (!interactive) {
        reply();
        return 0;
    }
    for (std::string line; std::getline(std::cin, line);) {
        if (line.empty()) continue;
        messages.push_back({"user", line});
        reply();
    }
    return 0;
}

int run(const cli_options& given) {
    session s = open_session(given);
    const cli_options o = with_generation_defaults(given, s);
    if ((!o.stop.empty() || o.logprobs) && (o.mode == run_mode::beam || o.mode == run_mode::tree))
        throw usage_error(std::string(o.logprobs ? "--logprobs" : "--stop") + " is for greedy and sample modes");
    if (!o.stop.empty() && !s.tok) throw usage_error("--stop needs the model's vocabulary");
    if (o.chat) {
        if (o.mode == run_mode::beam || o.mode == run_mode::tree) throw usage_error("--chat is for greedy and sample modes");
        if (o.logprobs) throw usage_error("--logprobs is not shown in --chat");
        return run_chat(o, s);
    }
    if (o.chat_template || o.system || o.messages_file) throw usage_error("--chat-template, --system and --messages need --chat");
    switch (o.mode) {
        case run_mode::beam: return run_beam(o, s);
        case run_mode::tree: return run_tree(o, s);
        default: return run_generate(o, s);
    }
}

}  // namespace

int main(int argc, char** argv) {
    cli_options options;
    CLI::App app("Decodes a GGUF file or a llama2.c checkpoint: greedy, sampling, beam search or MaxEnt-TS tree search.",
                 "kvdecode-generate");
    app.get_formatter()->column_width(28);
    add_options(app, options);
    try {
        app.parse(argc, argv);
        for (const CLI::Option* opt : app.get_options())
            if (opt->count() > 0) options.given.insert(opt->get_name());
        complete(options);
        return run(options);
    } catch (const CLI::CallForHelp&) {
        std::fputs(app.help().c_str(), stdout);
        return 0;
    } catch (const CLI::ParseError& e) {  // unknown options, missing values
        std::fprintf(stderr, "kvdecode-generate: %s (see --help)\n", e.what());
        return 1;
    } catch (const usage_error& e) {
        std::fprintf(stderr, "kvdecode-generate: %s\n", e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "kvdecode-generate: error: %s\n", e.what());
        return 1;
    }
}
