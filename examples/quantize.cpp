// kvdecode-quantize: writes a GGUF file of one weight type from a llama2.c checkpoint,
// a Hugging Face model folder or another GGUF file (io/gguf_convert.hpp and
// io/hf_gguf.hpp do the work).
//
//   kvdecode-quantize stories15M.bin stories15M-q8_0.gguf q8_0 --tokenizer tokenizer.bin
//   kvdecode-quantize TinyLlama-1.1B-Chat-v1.0/ tinyllama-q8_0.gguf q8_0
//   kvdecode-quantize model-f32.gguf model-q4_k.gguf q4_k --output-type q6_k
//
// The input's kind: a folder is a Hugging Face model (config.json, safetensors); a file
// starting "GGUF" is GGUF, any other a llama2.c checkpoint. A folder's tokenizer.json
// becomes the file's vocabulary (io/hf_gguf_vocab.hpp): tokenizer.huggingface.json,
// which kvdecode reads, and the ggml arrays llama.cpp reads (byte-level BPE as `gpt2`,
// SentencePiece-style BPE as `llama` with scores in merge order), with
// tokenizer_config.json's chat template.
// Lines on stderr: the vocabulary written and where llama.cpp, reading its arrays,
// may tokenize differently from tokenizer.json; each tensor that falls back to another
// type; a llama2.c input without --tokenizer or a folder without tokenizer.json (the
// file then has no vocabulary). On stdout: what was written.
// Any error: one line on stderr, nothing on stdout, exit status 1, no output file (the
// writer writes a temporary file and renames it).

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include <kvdecode/io/gguf.hpp>
#include <kvdecode/io/gguf_convert.hpp>
#include <kvdecode/io/hf_gguf.hpp>
#include <kvdecode/io/hf_gguf_vocab.hpp>
#include <kvdecode/io/hf_model.hpp>
#include <kvdecode/io/llama2c_checkpoint.hpp>
#include <kvdecode/io/llama2c_tokenizer.hpp>

namespace {

struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct cli_options {
    std::string input, output, type;
    std::string tokenizer;                  // llama2.c only
    std::optional<std::string> output_type;
    std::optional<std::string> name;
    std::size_t threads = std::max(1u, std::thread::hardware_concurrency());
};

constexpr std::size_t max_threads = 256;

kvdecode::weight_type parse_type(const std::string& option, const std::string& v) {
    try {
        return kvdecode::parse_weight_type(v);
    } catch (const std::invalid_argument&) {
        throw usage_error(option + " must be one of " + kvdecode::weight_type_names() + ", got '" + v + "'");
    }
}

std::size_t parse_threads(const std::string& v) {
    std::size_t n = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (v.empty() || ec != std::errc() || end != v.data() + v.size() || n < 1 || n > max_threads)
        throw usage_error("--threads expects an integer from 1 to " + std::to_string(max_threads) + ", got '" + v + "'");
    return n;
}

bool is_gguf(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    char magic[4] = {};
    return in.read(magic, 4) && std::string_view(magic, 4) == "GGUF";
}

// "q8_0 x30, f32 x9": the tensor types of the file, most frequent first.
std::string type_counts(const kvdecode::gguf_writer& w) {
    std::map<std::string, std::size_t> n;
    for (const auto& t : w.tensors()) {
        std::string name(kvdecode::to_string(t.type));
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        ++n[name];
    }
    std::vector<std::pair<std::string, std::size_t>> sorted(n.begin(), n.end());
    std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    std::string s;
    for (const auto& [type, count] : sorted) s += (s.empty() ? "" : ", ") + type + " x" + std::to_string(count);
    return s;
}

int run(const cli_options& o) {
    kvdecode::gguf_convert_options options{.type = parse_type("TYPE", o.type),
                                           .output_type = std::nullopt,
                                           .name = o.name,
                                           .threads = o.threads};
    if (o.output_type) options.output_type = parse_type("--output-type", *o.output_type);
    const bool folder = std::filesystem::is_directory(o.input);
    if (!folder && !std::filesystem::is_regular_file(o.input))
        throw std::runtime_error(o.input + ": " + (std::filesystem::exists(o.input) ? "not a regular file" : "no such file"));

    kvdecode::gguf_conversion c;
    std::optional<kvdecode::gguf_file> in;  // what the output's copied tensors point into, until written
    if (folder) {
        if (!o.tokenizer.empty()) throw usage_error("--tokenizer is for llama2.c checkpoints; a model folder has its own");
        const kvdecode::hf_config config = kvdecode::read_hf_config(std::filesystem::path(o.input) / "config.json");
        const kvdecode::hf_weight_files files = kvdecode::hf_weight_files::open(o.input);
        auto path = std::filesystem::path(o.input).lexically_normal();
        if (path.filename().empty()) path = path.parent_path();  // "folder/"
        if (!options.name) options.name = path.filename().string();
        c = kvdecode::gguf_from_hf(config, kvdecode::hf_stored_weights(config, files), options);
        const auto json_path = std::filesystem::path(o.input) / "tokenizer.json";
        if (std::filesystem::is_regular_file(json_path)) {
            std::ifstream json_file(json_path, std::ios::binary);
            const std::string json((std::istreambuf_iterator<char>(json_file)), std::istreambuf_iterator<char>());
            const auto written = kvdecode::set_hf_gguf_vocab(
                c.file, kvdecode::read_hf_tokenizer(o.input), json,
                {.vocab_size = config.model.vocab_size,
                 .bos = config.bos,
                 .eos = config.eos.empty() ? std::nullopt : std::optional<kvdecode::token_id>(config.eos.front()),
                 .pad = config.pad});
            std::fprintf(stderr, "kvdecode-quantize: vocabulary: tokenizer.huggingface.json and %s\n",
                         written.model.empty() ? "no ggml arrays"
                                               : ("tokenizer.ggml.model " + written.model + ", pre " + written.pre).c_str());
            for (const auto& note : written.notes) std::fprintf(stderr, "kvdecode-quantize: vocabulary: %s\n", note.c_str());
        } else {
            std::fprintf(stderr, "kvdecode-quantize: no tokenizer.json: %s gets no vocabulary (kvdecode-generate --prompt-ids "
                                 "reads it)\n", o.output.c_str());
        }
    } else if (is_gguf(o.input)) {
        if (!o.tokenizer.empty())
            throw usage_error("--tokenizer is for llama2.c checkpoints; a GGUF file holds its vocabulary");
        in = kvdecode::gguf_file::open(o.input);
        c = kvdecode::gguf_requantize(*in, options);
    } else {
        const auto weights = kvdecode::read_llama2c_checkpoint<float>(o.input);
        std::optional<kvdecode::sentencepiece_tokenizer> tok;
        if (!o.tokenizer.empty()) tok = kvdecode::read_llama2c_tokenizer(o.tokenizer, weights.config().vocab_size);
        else
            std::fprintf(stderr, "kvdecode-quantize: no --tokenizer: %s gets no vocabulary (llama.cpp needs one; "
                                 "kvdecode-generate --prompt-ids still works)\n", o.output.c_str());
        if (!options.name) options.name = std::filesystem::path(o.input).stem().string();
        c = kvdecode::gguf_from_llama2c(weights, tok ? &*tok : nullptr, options);
    }
    for (const auto& note : c.notes) std::fprintf(stderr, "%s\n", note.c_str());
    c.file.write(o.output);
    std::printf("%s: GGUF v3, %zu tensors (%s), %ju bytes\n", o.output.c_str(), c.file.tensors().size(),
                type_counts(c.file).c_str(), static_cast<std::uintmax_t>(std::filesystem::file_size(o.output)));
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    cli_options o;
    CLI::App app("Writes a GGUF file (what llama.cpp and kvdecode-generate read) of one weight type from a llama2.c "
                 "checkpoint, a Hugging Face model folder or a GGUF file. Matrices get TYPE; vectors stay f32; a K-type falls back per tensor "
                 "where a row is not a multiple of 256 (q4_k -> q5_0, q5_k -> q5_1, q6_k -> q8_0, q2_k/q3_k -> q4_0).",
                 "kvdecode-quantize");
    app.get_formatter()->column_width(28);
    app.add_option("IN", o.input, "llama2.c checkpoint, Hugging Face model folder or GGUF file")->required();
    app.add_option("OUT", o.output, "the GGUF file to write (replaced if it exists)")->required();
    app.add_option("TYPE", o.type, "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k or q6_k")->required();
    app.add_option("--tokenizer", o.tokenizer, "llama2.c tokenizer of a llama2.c checkpoint (without it: no vocabulary)")
        ->type_name("PATH");
    app.add_option_function<std::string>("--output-type", [&](const std::string& v) { o.output_type = v; },
                                         "type of output.weight (default: TYPE; llama-quantize's recipes use q6_k)")
        ->type_name("TYPE");
    app.add_option_function<std::string>("--name", [&](const std::string& v) { o.name = v; },
                                         "general.name (default: a checkpoint's file name, a GGUF file's own)")
        ->type_name("TEXT");
    app.add_option_function<std::string>("--threads", [&](const std::string& v) { o.threads = parse_threads(v); },
                                         "threads quantising rows (1 to 256; default: the CPUs); the bytes do not change")
        ->type_name("N");
    try {
        app.parse(argc, argv);
        return run(o);
    } catch (const CLI::CallForHelp&) {
        std::fputs(app.help().c_str(), stdout);
        return 0;
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "kvdecode-quantize: %s (see --help)\n", e.what());
        return 1;
    } catch (const usage_error& e) {
        std::fprintf(stderr, "kvdecode-quantize: %s\n", e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "kvdecode-quantize: error: %s\n", e.what());
        return 1;
    }
}
