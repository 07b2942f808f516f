// kvdecode-tokenize: a model's tokenizer on the command line.
//
//   kvdecode-tokenize --model Qwen2.5-0.5B/ "Hello, world"          # ids, as transformers' encode()
//   kvdecode-tokenize --model model.gguf --pieces "Hello, world"    # id and piece per line
//   kvdecode-tokenize --model Qwen2.5-0.5B/ --decode 9707,11,1879    # text, as transformers' decode()
//
// The model is a Hugging Face folder (its tokenizer.json), a tokenizer.json file, a
// GGUF file (its vocabulary) or a llama2.c tokenizer file. Ids are printed separated
// by spaces on one line; --decode prints the text and a newline. Any error: one line
// on stderr, exit status 1.

#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include <kvdecode/io/gguf.hpp>
#include <kvdecode/io/gguf_tokenizer.hpp>
#include <kvdecode/io/hf_tokenizer.hpp>
#include <kvdecode/io/llama2c_tokenizer.hpp>
#include <kvdecode/tokenizer/any_tokenizer.hpp>

namespace {

using kvdecode::token_id;

struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct cli_options {
    std::string model;
    std::vector<std::string> text;
    std::optional<std::string> decode;
    bool no_special = false;     // encode without BOS/EOS (add_special_tokens=False)
    bool parse_special = false;  // GGUF / llama2.c: special token texts become their tokens
    bool skip_special = false;   // decode: leave special tokens out (skip_special_tokens=True)
    bool pieces = false;
};

bool starts_with_gguf_magic(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    char magic[4] = {};
    return in.read(magic, 4) && std::string_view(magic, 4) == "GGUF";
}

kvdecode::any_tokenizer open_tokenizer(const std::filesystem::path& path) {
    if (std::filesystem::is_directory(path) || path.filename() == "tokenizer.json") return kvdecode::read_hf_tokenizer(path);
    if (!std::filesystem::is_regular_file(path))
        throw std::runtime_error(path.string() + ": " + (std::filesystem::exists(path) ? "not a regular file" : "no such file"));
    if (starts_with_gguf_magic(path)) return kvdecode::gguf_tokenizer(kvdecode::gguf_file::open(path));
    return kvdecode::read_llama2c_tokenizer(path, std::nullopt);
}

std::vector<token_id> parse_ids(const std::string& text) {
    std::vector<token_id> ids;
    std::size_t start = 0;
    while (start <= text.size()) {
        const std::size_t end = std::min(text.find_first_of(", ", start), text.size());
        const std::string item = text.substr(start, end - start);
        start = end + 1;
        if (item.empty()) continue;
        std::size_t used = 0;
        long long v = -1;
        try {
            v = std::stoll(item, &used);
        } catch (const std::exception&) {
        }
        if (used != item.size() || v < 0 || v > 2147483647LL)
            throw usage_error("--decode expects ids from 0 to 2147483647 separated by commas or spaces, got '" + item + "'");
        ids.push_back(static_cast<token_id>(v));
    }
    return ids;
}

int run(const cli_options& o) {
    if (o.decode && !o.text.empty()) throw usage_error("give TEXT or --decode IDS, not both");
    if (!o.decode && o.text.empty()) throw usage_error("give the TEXT to encode, or --decode IDS");
    const std::vector<token_id> decode_ids = o.decode ? parse_ids(*o.decode) : std::vector<token_id>{};
    const kvdecode::any_tokenizer tok = open_tokenizer(o.model);
    if (o.decode) {
        const std::vector<token_id>& ids = decode_ids;
        for (token_id id : ids)
            if (static_cast<std::size_t>(id) >= tok.vocab_size())
                throw usage_error("--decode: " + std::to_string(id) + " is outside the vocabulary of " +
                                  std::to_string(tok.vocab_size()));
        std::printf("%s\n", tok.decode(ids, {.special = !o.skip_special}).c_str());
        return 0;
    }
    std::string text;
    for (const std::string& t : o.text) text += (text.empty() ? "" : " ") + t;
    const std::vector<token_id> ids = tok.encode(text, {.add_special = !o.no_special, .parse_special = o.parse_special});
    if (o.pieces) {
        for (token_id id : ids) std::printf("%d\t%s\n", id, std::string(tok.piece(id)).c_str());
    } else {
        for (std::size_t i = 0; i < ids.size(); ++i) std::printf(i ? " %d" : "%d", ids[i]);
        std::printf("\n");
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    cli_options o;
    CLI::App app("Encodes text to token ids, or decodes ids to text, with a model's tokenizer.", "kvdecode-tokenize");
    app.get_formatter()->column_width(28);
    app.add_option("--model", o.model, "Hugging Face folder, tokenizer.json, GGUF file or llama2.c tokenizer file")
        ->required()
        ->type_name("PATH");
    app.add_option("TEXT", o.text, "the text to encode (several words are joined with spaces)");
    app.add_option_function<std::string>("--decode", [&](const std::string& v) { o.decode = v; },
                                         "decode these ids (commas or spaces between them) instead")
        ->type_name("IDS");
    app.add_flag("--no-special", o.no_special, "encode without the BOS/EOS the tokenizer adds (add_special_tokens=False)");
    app.add_flag("--parse-special", o.parse_special,
                 "GGUF and llama2.c vocabularies: special token texts in TEXT become their tokens (tokenizer.json "
                 "files always match their added tokens)");
    app.add_flag("--skip-special", o.skip_special, "--decode: leave special tokens out (skip_special_tokens=True)");
    app.add_flag("--pieces", o.pieces, "print each id with its piece, one per line");
    try {
        app.parse(argc, argv);
        return run(o);
    } catch (const CLI::CallForHelp&) {
        std::fputs(app.help().c_str(), stdout);
        return 0;
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "kvdecode-tokenize: %s (see --help)\n", e.what());
        return 1;
    } catch (const usage_error& e) {
        std::fprintf(stderr, "kvdecode-tokenize: %s\n", e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "kvdecode-tokenize: error: %s\n", e.what());
        return 1;
    }
}
