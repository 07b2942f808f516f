// Writes the fuzzers' seed corpora into the build folder (nothing of it is committed):
//   kvdecode_fuzz_seeds OUT_DIR MODELS_DIR [SHARED_DIR...]
// OUT_DIR/<harness>/ gets small crafted cases (valid files of several shapes and the
// usual ways of being broken) and the real files: every *.bin of the shipped models/
// (and of the shared folders where present) seeds both llama2.c readers, since a
// checkpoint is a broken tokenizer and the other way round; text files seed the prompt
// encoder; *.gguf files (../shared/fixtures/gguf) seed the GGUF reader, next to small
// files written by gguf_writer; GGUF vocabularies (metadata only: llama and gpt2
// arrays, tokenizer.huggingface.json) are written here, the shipped tokenizer among
// them; small Hugging Face weights, configs and tokenizer.json files are written here,
// and ../shared/fixtures/hf's safetensors, config and tokenizer files copied.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "kvdecode/io/gguf_writer.hpp"
#include "kvdecode/io/seq2seq_gguf.hpp"
#include "kvdecode/model/random_weights.hpp"
#include "kvdecode/tokenizer/byte_level.hpp"

namespace fs = std::filesystem;

namespace {

using bytes = std::vector<char>;

template <class V>
void put(bytes& out, V v) {
    const char* p = reinterpret_cast<const char*>(&v);
    out.insert(out.end(), p, p + sizeof v);
}

void write(const fs::path& dir, const std::string& name, const bytes& b) {
    fs::create_directories(dir);
    std::ofstream(dir / name, std::ios::binary).write(b.data(), static_cast<std::streamsize>(b.size()));
}

struct shape {
    std::int32_t dim, hidden, layers, heads, kv_heads, vocab, seq_len;  // vocab < 0: separate classifier
};

// A complete checkpoint of this shape with small, varied weights.
bytes checkpoint(const shape& s) {
    bytes out;
    for (std::int32_t f : {s.dim, s.hidden, s.layers, s.heads, s.kv_heads, s.vocab, s.seq_len}) put(out, f);
    const std::int64_t head_dim = s.dim / s.heads, kv_dim = s.kv_heads * head_dim, vocab = s.vocab < 0 ? -s.vocab : s.vocab;
    std::int64_t floats = vocab * s.dim + s.layers * (2 * s.dim + 2 * s.dim * s.dim + 2 * kv_dim * s.dim +
                                                      3 * std::int64_t{s.hidden} * s.dim) +
                          s.dim + s.seq_len * head_dim;
    if (s.vocab < 0) floats += vocab * s.dim;
    for (std::int64_t i = 0; i < floats; ++i) put(out, 0.01f * static_cast<float>(i % 97) - 0.3f);
    return out;
}

bytes header_only(const shape& s) {
    bytes out;
    for (std::int32_t f : {s.dim, s.hidden, s.layers, s.heads, s.kv_heads, s.vocab, s.seq_len}) put(out, f);
    return out;
}

using kvfuzz::piece;

bytes tokenizer_file(std::int32_t max_length, const std::vector<piece>& pieces) {
    const auto b = kvfuzz::llama2c_tokenizer_file(max_length, pieces);
    return bytes(reinterpret_cast<const char*>(b.data()), reinterpret_cast<const char*>(b.data() + b.size()));
}

std::vector<piece> specials() { return {{"<unk>", 0}, {"\n<s>\n", 0}, {"\n</s>\n", 0}}; }

std::vector<piece> with_byte_pieces(std::vector<piece> pieces) {
    for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        pieces.push_back({name});
    }
    return pieces;
}

// GGUF metadata and no tensors, through gguf_writer: the vocabulary harness's seeds.
class gguf_metadata {
public:
    gguf_metadata& str(const std::string& key, const std::string& v) { return set(key, kvdecode::gguf_value(v)); }
    gguf_metadata& uint(const std::string& key, std::uint32_t v) { return set(key, kvdecode::gguf_value(v)); }
    gguf_metadata& flag(const std::string& key, bool v) { return set(key, kvdecode::gguf_value(v)); }
    gguf_metadata& strings(const std::string& key, const std::vector<std::string>& v) {
        writer_.set(key, v);
        return *this;
    }
    gguf_metadata& floats(const std::string& key, const std::vector<float>& v) {
        writer_.set(key, v);
        return *this;
    }
    gguf_metadata& ints(const std::string& key, const std::vector<std::int32_t>& v) {
        writer_.set(key, v);
        return *this;
    }
    bytes file() const {
        const std::vector<std::byte> b = writer_.to_bytes();
        return bytes(reinterpret_cast<const char*>(b.data()), reinterpret_cast<const char*>(b.data() + b.size()));
    }

private:
    gguf_metadata& set(const std::string& key, kvdecode::gguf_value v) {
        writer_.set(key, std::move(v));
        return *this;
    }
    kvdecode::gguf_writer writer_;
};

// A llama2.c tokenizer file as GGUF's llama vocabulary (as llama.cpp's converter
// writes it: U+2581 for spaces, types unknown / control / byte / normal).
bytes llama2c_as_gguf(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    const bytes file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::string> tokens;
    std::vector<float> scores;
    std::vector<std::int32_t> types;
    for (std::size_t at = 4; at + 8 <= file.size();) {
        float score;
        std::int32_t n;
        std::memcpy(&score, file.data() + at, 4);
        std::memcpy(&n, file.data() + at + 4, 4);
        at += 8;
        if (n < 0 || at + static_cast<std::size_t>(n) > file.size()) break;
        std::string piece(file.data() + at, static_cast<std::size_t>(n));
        at += static_cast<std::size_t>(n);
        const std::size_t id = tokens.size();
        if (id < 3) piece = id == 0 ? "<unk>" : id == 1 ? "<s>" : "</s>";
        for (std::size_t sp; (sp = piece.find(' ')) != std::string::npos;) piece.replace(sp, 1, "\xE2\x96\x81");
        tokens.push_back(piece);
        scores.push_back(score);
        types.push_back(id == 0 ? 2 : id < 3 ? 3 : kvfuzz::byte_piece_value(piece) >= 0 ? 6 : 1);
    }
    return gguf_metadata()
        .str("tokenizer.ggml.model", "llama")
        .strings("tokenizer.ggml.tokens", tokens)
        .floats("tokenizer.ggml.scores", scores)
        .ints("tokenizer.ggml.token_type", types)
        .uint("tokenizer.ggml.bos_token_id", 1)
        .uint("tokenizer.ggml.eos_token_id", 2)
        .uint("tokenizer.ggml.padding_token_id", 0xFFFFFFFFu)
        .file();
}

// Hugging Face tokenizer.json files, small and written here: a byte-level one (Qwen2's
// Split regex, ByteLevel, added special tokens, a tokenizer_config.json after a NUL
// byte, as the harness reads it), a SentencePiece-style one (Prepend and Replace
// normalizers, byte fallback, TemplateProcessing, the Replace/ByteFallback/Fuse/Strip
// decoder), one with Metaspace and string merges, and broken ones.
void hf_tokenizer_seeds(const fs::path& dir) {
    const auto text = [](const std::string& s) { return bytes(s.begin(), s.end()); };
    std::string byte_vocab;  // the 256 byte-level characters (GPT-2's), then two merges' results
    int next = 0x100;
    for (int b = 0; b < 256; ++b) {
        const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        const unsigned c = printable ? static_cast<unsigned>(b) : static_cast<unsigned>(next++);
        char esc[16];
        std::snprintf(esc, sizeof esc, "\\u%04X", c);
        if (c == '"' || c == '\\') std::snprintf(esc, sizeof esc, "\\%c", static_cast<char>(c));
        byte_vocab += std::string(b ? ", " : "") + "\"" + esc + "\": " + std::to_string(b);
    }
    byte_vocab += R"(, "\u0120t": 256, "\u0120th": 257)";
    const std::string byte_level = R"({"version": "1.0", "truncation": null, "padding": null,
 "added_tokens": [{"id": 258, "content": "<|endoftext|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
                  {"id": 259, "content": "<|im_end|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
 "normalizer": {"type": "NFC"},
 "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
   {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
   {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}]},
 "post_processor": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
 "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
 "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
           "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
           "vocab": {)" + byte_vocab + R"(}, "merges": [["\u0120", "t"], ["\u0120t", "h"]]}})";
    const std::string config = R"({"bos_token": null, "eos_token": "<|im_end|>", "pad_token": {"content": "<|endoftext|>"},
 "add_bos_token": false, "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}"})";
    write(dir, "valid_byte_level", text(byte_level + std::string(1, '\0') + config));
    write(dir, "valid_byte_level_no_config", text(byte_level));

    std::string spm_vocab = R"("<unk>": 0, "<s>": 1, "</s>": 2)";
    for (int b = 0; b < 256; ++b) {
        char name[16];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        spm_vocab += ", \"" + std::string(name) + "\": " + std::to_string(3 + b);
    }
    spm_vocab += R"(, "\u2581": 259, "a": 260, "b": 261, "\u2581a": 262, "ab": 263, "\u2581ab": 264)";
    const std::string spm = R"({"version": "1.0", "truncation": null, "padding": null,
 "added_tokens": [{"id": 0, "content": "<unk>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
                  {"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
                  {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
 "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"}, {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
 "pre_tokenizer": null,
 "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
   "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
 "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
   {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
 "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null, "end_of_word_suffix": null,
           "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
           "vocab": {)" + spm_vocab + R"(}, "merges": ["\u2581 a", "a b", "\u2581a b"]}})";
    write(dir, "valid_spm", text(spm + std::string(1, '\0') + R"({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": true})"));

    const std::string metaspace = R"({"added_tokens": [], "normalizer": null,
 "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": true},
 "post_processor": null, "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": true},
 "model": {"type": "BPE", "unk_token": "<unk>", "vocab": {"<unk>": 0, "\u2581": 1, "a": 2, "\u2581a": 3}, "merges": ["\u2581 a"]}})";
    write(dir, "valid_metaspace", text(metaspace));
    write(dir, "no_decoder_split_removed", text(R"({"model": {"vocab": {"a": 0, "b": 1}, "merges": []},
 "pre_tokenizer": {"type": "Split", "pattern": {"String": "b"}, "behavior": "Removed", "invert": true}})"));

    write(dir, "not_json", text("{\"model\": "));
    write(dir, "unknown_model", text(R"({"model": {"type": "WordPiece", "vocab": {"a": 0}}})"));
    write(dir, "id_out_of_range", text(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 5}, "merges": []}})"));
    write(dir, "merge_of_unknown", text(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a c"]}})"));
    write(dir, "bad_regex", text(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
 "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(\\p{L"}, "behavior": "Isolated", "invert": false}})"));
    write(dir, "added_gap", text(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
 "added_tokens": [{"id": 7, "content": "<x>", "special": true, "normalized": false}]})"));
}

// Hugging Face tokenizer folders (each subfolder of `from` with a tokenizer.json):
// their tokenizer.json, and with the tokenizer_config.json after a NUL byte.
void copy_hf_tokenizers(const fs::path& from, const std::string& prefix, const fs::path& out) {
    if (!fs::is_directory(from)) return;
    for (const auto& entry : fs::directory_iterator(from)) {
        const fs::path json = entry.path() / "tokenizer.json", config = entry.path() / "tokenizer_config.json";
        if (!fs::is_regular_file(json)) continue;
        const auto slurp = [](const fs::path& p) {
            std::ifstream in(p, std::ios::binary);
            return bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        };
        const std::string name = prefix + entry.path().filename().string();
        bytes both = slurp(json);
        write(out / "hf_tokenizer", name, both);
        if (fs::is_regular_file(config)) {
            both.push_back('\0');
            const bytes c = slurp(config);
            both.insert(both.end(), c.begin(), c.end());
            write(out / "hf_tokenizer", name + "_with_config", both);
        }
    }
}

void copy_real_files(const fs::path& from, const std::string& prefix, const fs::path& out) {
    if (!fs::is_directory(from)) return;
    for (const auto& entry : fs::directory_iterator(from)) {
        const auto& p = entry.path();
        if (p.extension() == ".bin") {
            fs::create_directories(out / "llama2c_checkpoint");
            fs::create_directories(out / "llama2c_tokenizer");
            fs::copy_file(p, out / "llama2c_checkpoint" / (prefix + p.filename().string()), fs::copy_options::overwrite_existing);
            fs::copy_file(p, out / "llama2c_tokenizer" / (prefix + p.filename().string()), fs::copy_options::overwrite_existing);
        } else if (p.extension() == ".gguf") {
            fs::create_directories(out / "gguf");
            fs::copy_file(p, out / "gguf" / (prefix + p.filename().string()), fs::copy_options::overwrite_existing);
        } else if (p.extension() == ".md") {
            fs::create_directories(out / "tokenizer_encode");
            fs::copy_file(p, out / "tokenizer_encode" / (prefix + p.filename().string()), fs::copy_options::overwrite_existing);
        }
    }
}

// Hugging Face folders (../shared/fixtures/hf, searched to any depth): every
// *.safetensors seeds the safetensors reader, every config.json and
// generation_config.json the config reader.
void copy_hf_files(const fs::path& from, const fs::path& out) {
    if (!fs::is_directory(from)) return;
    for (const auto& entry : fs::recursive_directory_iterator(from)) {
        const auto& p = entry.path();
        const std::string name = p.parent_path().filename().string() + "_" + p.filename().string();
        std::string harness;
        if (p.extension() == ".safetensors") harness = "safetensors";
        else if (p.filename() == "config.json" || p.filename() == "generation_config.json") harness = "hf_config";
        else continue;
        fs::create_directories(out / harness);
        fs::copy_file(p, out / harness / ("shared_" + name), fs::copy_options::overwrite_existing);
    }
}

// A safetensors file: the header text (padded with spaces to 8 bytes, as the Python
// writer does) and `values` float32 zeros-and-ones of data.
bytes safetensors_file_of(std::string header, std::size_t data_bytes) {
    while ((header.size() + 8) % 8 != 0) header += ' ';
    bytes out;
    put(out, static_cast<std::uint64_t>(header.size()));
    out.insert(out.end(), header.begin(), header.end());
    for (std::size_t i = 0; i < data_bytes; ++i) out.push_back(static_cast<char>(i % 3 == 0 ? 0x3f : 0));
    return out;
}

// The fuzz harness's small tied Llama (dim 8, hidden 12, 1 layer, 2 heads, 1 KV head,
// vocab 6) as F32, BF16 and F16 files, then broken ones; and config.json texts.
// Conversation files and chat templates (the chat harness reads its input as both).
void chat_seeds(const fs::path& dir) {
    const auto text = [](const std::string& s) { return bytes(s.begin(), s.end()); };
    write(dir, "conversation", text(R"([{"role": "system", "content": "Be brief."}, {"role": "user", "content": " Hi\n"},
 {"role": "assistant", "content": "Hello.\u00a0"}, {"role": "user", "content": "\u4f60\u597d"}])"));
    write(dir, "conversation_object", text(R"({"messages": [{"role": "user", "content": "a"}, {"role": "tool", "content": "{\"x\": 1}"}]})"));
    write(dir, "conversation_two_users", text(R"([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])"));
    write(dir, "conversation_extra_key", text(R"([{"role": "assistant", "content": "", "tool_calls": []}])"));
    write(dir, "conversation_not_string", text(R"([{"role": "user", "content": 3}])"));
    write(dir, "template_qwen2", text(
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a "
        "helpful assistant.<|im_end|>\\n' }}{% endif %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
        "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"));
    write(dir, "template_llama3", text(
        "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
        "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% "
        "set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
        "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"));
    write(dir, "template_comment_quote", text("{#- we're here #}{{ \"[INST] \" + x }}{% set date_string = \"26 Jul 2024\" %}"));
    write(dir, "template_unclosed", text("{{ '<|im_start|>system\\nunclosed"));
}

void hf_seeds(const fs::path& out) {
    struct tensor {
        std::string name;
        std::vector<std::size_t> shape;
    };
    const std::vector<tensor> llama = {{"model.embed_tokens.weight", {6, 8}},
                                       {"model.layers.0.input_layernorm.weight", {8}},
                                       {"model.layers.0.self_attn.q_proj.weight", {8, 8}},
                                       {"model.layers.0.self_attn.k_proj.weight", {4, 8}},
                                       {"model.layers.0.self_attn.v_proj.weight", {4, 8}},
                                       {"model.layers.0.self_attn.o_proj.weight", {8, 8}},
                                       {"model.layers.0.post_attention_layernorm.weight", {8}},
                                       {"model.layers.0.mlp.gate_proj.weight", {12, 8}},
                                       {"model.layers.0.mlp.up_proj.weight", {12, 8}},
                                       {"model.layers.0.mlp.down_proj.weight", {8, 12}},
                                       {"model.norm.weight", {8}}};
    auto file = [&](const char* dtype, std::size_t size, const std::vector<tensor>& tensors) {
        std::string header = "{\"__metadata__\":{\"format\":\"pt\"}";
        std::size_t offset = 0;
        for (const auto& t : tensors) {
            std::size_t n = size;
            std::string shape;
            for (std::size_t d : t.shape) {
                n *= d;
                shape += (shape.empty() ? "" : ",") + std::to_string(d);
            }
            header += ",\"" + t.name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":[" + shape + "],\"data_offsets\":[" +
                      std::to_string(offset) + "," + std::to_string(offset + n) + "]}";
            offset += n;
        }
        return safetensors_file_of(header + "}", offset);
    };
    const fs::path st = out / "safetensors";
    write(st, "valid_llama_f32", file("F32", 4, llama));
    write(st, "valid_llama_bf16", file("BF16", 2, llama));
    write(st, "valid_llama_f16", file("F16", 2, llama));
    write(st, "wrong_dtype", file("I32", 4, llama));
    auto missing = llama;
    missing.pop_back();
    write(st, "missing_norm", file("F32", 4, missing));
    auto extra = llama;
    extra.push_back({"lm_head.weight", {6, 8}});
    write(st, "tied_with_lm_head", file("F32", 4, extra));
    auto misshapen = llama;
    misshapen[3].shape = {8, 4};
    write(st, "misshapen", file("F32", 4, misshapen));
    write(st, "empty_header", safetensors_file_of("{}", 0));
    bytes truncated = file("F32", 4, llama);
    truncated.resize(truncated.size() - 5);
    write(st, "truncated", truncated);

    const fs::path hc = out / "hf_config";
    const std::string base = R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8,
 "intermediate_size": 12, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
 "vocab_size": 6, "max_position_embeddings": 16, "rms_norm_eps": 1e-05, "tie_word_embeddings": true,
 "bos_token_id": 1, "eos_token_id": [2, 3])";
    auto text = [](const std::string& s) { return bytes(s.begin(), s.end()); };
    write(hc, "llama", text(base + "}"));
    write(hc, "llama3_scaling", text(base + R"(, "rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3",
 "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8}})"));
    write(hc, "linear_scaling", text(base + R"(, "rope_scaling": {"type": "linear", "factor": 2.0}})"));
    write(hc, "qwen2_native", text(R"({"architectures": ["Qwen2ForCausalLM"], "hidden_size": 8, "intermediate_size": 12,
 "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": 6,
 "max_position_embeddings": 16, "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
 "layer_types": ["full_attention"], "use_sliding_window": false, "sliding_window": 4})"));
    write(hc, "mistral_window", text(R"({"architectures": ["MistralForCausalLM"], "hidden_size": 8, "intermediate_size": 12,
 "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 6, "max_position_embeddings": 16, "sliding_window": 4})"));
    write(hc, "generation", text(R"({"bos_token_id": 1, "eos_token_id": [2, 3], "do_sample": true, "temperature": 0.7,
 "top_k": 20, "top_p": 0.8, "max_new_tokens": 64, "early_stopping": "never"})"));
}

bytes from_bytes(const std::vector<std::byte>& b) {
    return bytes(reinterpret_cast<const char*>(b.data()), reinterpret_cast<const char*>(b.data() + b.size()));
}

// Small GGUF files from gguf_writer: metadata of every value type, tensors of several
// types and shapes, other alignments; then byte patches for the usual breakages.
void gguf_seeds(const fs::path& dir) {
    using namespace kvdecode;
    auto data = [](gguf_type t, const std::vector<std::uint64_t>& shape) {
        std::vector<std::byte> d(gguf_tensor_bytes(t, shape));
        for (std::size_t i = 0; i < d.size(); ++i) d[i] = static_cast<std::byte>((i * 37 + 11) & 0xff);
        return d;
    };
    auto add = [&](gguf_writer& w, const std::string& name, gguf_type t, std::vector<std::uint64_t> shape) {
        w.add_tensor(name, shape, t, data(t, shape));
    };
    gguf_writer all;
    all.set("general.architecture", "llama")
        .set("u8", gguf_value(std::uint8_t{7})).set("i8", gguf_value(std::int8_t{-7}))
        .set("u16", gguf_value(std::uint16_t{700})).set("i16", gguf_value(std::int16_t{-700}))
        .set("llama.context_length", gguf_value(std::uint32_t{256})).set("i32", gguf_value(std::int32_t{-70000}))
        .set("f32", gguf_value(1e-5f)).set("bool", gguf_value(true))
        .set("u64", gguf_value(std::uint64_t{1} << 40)).set("i64", gguf_value(std::int64_t{-1} << 40))
        .set("f64", gguf_value(0.5))
        .set("tokenizer.ggml.tokens", std::vector<std::string>{"<unk>", "<s>", "</s>", "<0x00>", "\xe2\x96\x81" "a"})
        .set("tokenizer.ggml.scores", std::vector<float>{0, 0, 0, -1, -2})
        .set("tokenizer.ggml.token_type", std::vector<std::int32_t>{2, 3, 3, 6, 1})
        .set("a.u8", std::vector<std::uint8_t>{1, 2}).set("a.bool", std::vector<bool>{true, false})
        .set("a.u64", std::vector<std::uint64_t>{5}).set("a.f64", std::vector<double>{0.25})
        .set("a.empty", std::vector<std::int16_t>{});
    add(all, "token_embd.weight", gguf_type::f16, {32, 5});
    add(all, "blk.0.attn_norm.weight", gguf_type::f32, {32});
    add(all, "blk.0.attn_q.weight", gguf_type::q8_0, {32, 32});
    add(all, "blk.0.ffn_down.weight", gguf_type::q4_k, {256, 2});
    add(all, "blk.0.ffn_up.weight", gguf_type::q6_k, {256, 1, 2});
    add(all, "output.weight", gguf_type::q4_0, {32, 5});
    add(all, "rope_freqs.weight", gguf_type::bf16, {4, 1, 1, 2});
    const bytes valid = from_bytes(all.to_bytes());
    write(dir, "valid_every_value_type", valid);

    for (std::uint32_t align : {1u, 64u}) {
        gguf_writer w;
        w.set("general.alignment", gguf_value(align));
        add(w, "a", gguf_type::q5_0, {32, 2});
        add(w, "b", gguf_type::q5_1, {64});
        add(w, "c", gguf_type::q2_k, {256});
        add(w, "d", gguf_type::q3_k, {256});
        add(w, "e", gguf_type::q5_k, {256});
        add(w, "f", gguf_type::q4_1, {32});
        write(dir, "valid_alignment_" + std::to_string(align), from_bytes(w.to_bytes()));
    }
    gguf_writer metadata_only;
    metadata_only.set("general.name", "nothing but metadata");
    write(dir, "valid_no_tensors", from_bytes(metadata_only.to_bytes()));
    gguf_writer tensors_only;
    add(tensors_only, "x", gguf_type::f32, {1});
    write(dir, "valid_no_metadata", from_bytes(tensors_only.to_bytes()));

    auto patched = [&](std::size_t offset, std::uint64_t value, std::size_t width) {
        bytes b = valid;
        std::memcpy(b.data() + offset, &value, width);  // little-endian
        return b;
    };
    write(dir, "version_2", patched(4, 2, 4));
    write(dir, "version_1", patched(4, 1, 4));
    write(dir, "version_4", patched(4, 4, 4));
    write(dir, "byte_swapped", patched(4, 0x03000000, 4));
    write(dir, "bad_magic", patched(0, 0x4c4d4747, 4));  // "GGML"
    write(dir, "huge_tensor_count", patched(8, std::uint64_t{1} << 40, 8));
    write(dir, "huge_kv_count", patched(16, std::uint64_t{1} << 40, 8));
    write(dir, "huge_key_length", patched(24, std::uint64_t{1} << 60, 8));
    bytes truncated = valid;
    truncated.resize(valid.size() / 2);
    write(dir, "truncated", truncated);
    bytes short_data = valid;
    short_data.resize(valid.size() - 1);
    write(dir, "last_tensor_short", short_data);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s OUT_DIR MODELS_DIR [SHARED_DIR...]\n", argv[0]);
        return 2;
    }
    const fs::path out = argv[1];
    fs::remove_all(out);

    // Checkpoints: valid ones (shared and separate classifier, MHA, GQA, MQA, the smallest
    // possible), then broken ones.
    const fs::path ck = out / "llama2c_checkpoint";
    write(ck, "valid_gqa_separate", checkpoint({8, 12, 2, 2, 1, -11, 6}));
    write(ck, "valid_gqa_shared", checkpoint({8, 12, 2, 2, 1, 11, 6}));
    write(ck, "valid_mqa", checkpoint({8, 16, 1, 4, 1, 7, 4}));
    write(ck, "valid_gqa3", checkpoint({12, 8, 1, 6, 2, 5, 3}));
    write(ck, "valid_mha", checkpoint({4, 4, 3, 2, 2, -3, 2}));
    write(ck, "valid_smallest", checkpoint({2, 1, 1, 1, 1, 1, 1}));
    bytes truncated = checkpoint({8, 12, 2, 2, 1, -11, 6});
    truncated.resize(truncated.size() - 4);
    write(ck, "truncated", truncated);
    bytes extra = checkpoint({4, 4, 1, 2, 1, 3, 2});
    extra.push_back(0);
    write(ck, "extra_byte", extra);
    write(ck, "header_only", header_only({8, 12, 2, 2, 1, -11, 6}));
    write(ck, "odd_head_dim", checkpoint({6, 4, 1, 2, 1, 3, 2}));
    write(ck, "kv_heads_not_dividing", header_only({12, 4, 1, 4, 3, 3, 2}));
    write(ck, "more_kv_than_q_heads", header_only({8, 4, 1, 2, 4, 3, 2}));
    write(ck, "vocab_int32_min", header_only({8, 4, 1, 2, 1, INT32_MIN, 2}));
    write(ck, "overflowing_dims", header_only({0x7ffffffe, 0x7fffffff, 0x7fffffff, 2, 1, 0x7fffffff, 0x7fffffff}));
    write(ck, "versioned_ak42", header_only({0x616b3432, 2, 1, 1, 1, 1, 1}));
    write(ck, "short_header", bytes{'\x08', 0, 0, 0, '\x0c'});

    // Tokenizers: the smallest valid one, one with every byte piece and a few merges,
    // and broken ones.
    const fs::path tk = out / "llama2c_tokenizer";
    write(tk, "valid_specials_only", tokenizer_file(6, specials()));
    auto merges = with_byte_pieces(specials());
    for (const piece& p : std::vector<piece>{{" ", -1}, {"a", -2}, {"b", -2}, {" a", -3}, {"ab", -4}, {"ab", 2},
                                             {"\xC3\xA9", -1}, {"", 0}, {"<0x4g>", -1}})
        merges.push_back(p);
    write(tk, "valid_bytes_and_merges", tokenizer_file(6, merges));
    write(tk, "byte_piece_as_bos", tokenizer_file(6, {{"<unk>", 0}, {"<0x41>", 0}, {"</s>", 0}, {" ", 0}}));
    bytes trailing = tokenizer_file(6, specials());
    trailing.insert(trailing.end(), {1, 2, 3});
    write(tk, "trailing_bytes", trailing);
    write(tk, "piece_longer_than_max", tokenizer_file(3, specials()));
    write(tk, "zero_max_length", tokenizer_file(0, {}));
    write(tk, "two_pieces", tokenizer_file(6, {{"<unk>", 0}, {"<s>", 0}}));
    bytes huge_length;
    put(huge_length, std::int32_t{0x7fffffff});
    put(huge_length, 0.0f);
    put(huge_length, std::int32_t{0x7ffffff0});
    write(tk, "huge_piece_length", huge_length);

    // Prompts: plain, empty, UTF-8 of several widths, broken UTF-8, every byte.
    const fs::path en = out / "tokenizer_encode";
    const std::vector<std::pair<std::string, std::string>> texts = {
        {"empty", ""},
        {"verse", "In the beginning God created the heaven and the earth."},
        {"spaces", "  a  b   "},
        {"utf8", "na\xC3\xAFve caf\xC3\xA9, \xE6\x97\xA5\xE6\x9C\xAC, \xF0\x9F\x98\x80"},
        {"broken_utf8", "\xC3 \xE6\x97 \xF0\x9F\x98 \x80\xBF \xFF\xFE"},
        {"pieces_as_text", "<s></s><unk><0x41><0xZZ>"}};
    for (const auto& [name, text] : texts) write(en, name, bytes(text.begin(), text.end()));
    bytes every_byte;
    for (int b = 0; b < 256; ++b) every_byte.push_back(static_cast<char>(b));
    write(en, "every_byte", every_byte);

    // GGUF vocabularies: small valid ones (all keys, tokens only, options and ids set,
    // special tokens), the shipped tokenizer converted, and broken ones.
    const fs::path gv = out / "gguf_vocab";
    const std::string mark = "\xE2\x96\x81";
    const std::vector<std::string> small = {"<unk>", "<s>", "</s>", "<0x41>", mark, "a", "b", mark + "a", "ab", "<u>"};
    const auto small_vocab = [&] {
        return gguf_metadata()
            .str("general.architecture", "llama")
            .str("tokenizer.ggml.model", "llama")
            .strings("tokenizer.ggml.tokens", small)
            .floats("tokenizer.ggml.scores", {0, 0, 0, 0, -1, -2, -2, -3, -1, 0});
    };
    write(gv, "valid_small", small_vocab().ints("tokenizer.ggml.token_type", {2, 3, 3, 6, 1, 1, 1, 1, 1, 4}).file());
    write(gv, "valid_tokens_only", gguf_metadata().str("tokenizer.ggml.model", "llama").strings("tokenizer.ggml.tokens", small).file());
    write(gv, "valid_options", small_vocab()
                                   .ints("tokenizer.ggml.token_type", {3, 3, 3, 6, 1, 1, 1, 1, 5, 4})
                                   .flag("tokenizer.ggml.add_bos_token", false)
                                   .flag("tokenizer.ggml.add_eos_token", true)
                                   .flag("tokenizer.ggml.add_space_prefix", false)
                                   .uint("tokenizer.ggml.eos_token_id", 9)
                                   .uint("tokenizer.ggml.unknown_token_id", 0xFFFFFFFFu)
                                   .file());
    // gpt2 (byte-level BPE) vocabularies: every byte's character, two merges, a control
    // and a user-defined token; with each pre-tokenizer kind, and broken.
    std::vector<std::string> byte_tokens;
    for (int b = 0; b < 256; ++b)
        byte_tokens.push_back(kvdecode::byte_level_alphabet::get().encode(std::string(1, static_cast<char>(b))));
    for (const char* t : {"hi", "\xC4\xA0hi", "<|im_end|>", "<tag>"}) byte_tokens.push_back(t);
    std::vector<std::int32_t> byte_types(byte_tokens.size(), 1);
    byte_types[258] = 3;
    byte_types[259] = 4;
    const auto gpt2_vocab = [&](const std::string& pre) {
        return gguf_metadata()
            .str("tokenizer.ggml.model", "gpt2")
            .str("tokenizer.ggml.pre", pre)
            .strings("tokenizer.ggml.tokens", byte_tokens)
            .ints("tokenizer.ggml.token_type", byte_types)
            .strings("tokenizer.ggml.merges", {"h i", "\xC4\xA0 hi"})
            .uint("tokenizer.ggml.eos_token_id", 258);
    };
    for (const char* pre : {"qwen2", "llama-bpe", "gpt-2", "default", "smollm", "falcon", "bloom", "tekken", "gpt-4o"})
        write(gv, std::string("gpt2_") + pre, gpt2_vocab(pre).file());
    write(gv, "gpt2_add_bos_eos", gpt2_vocab("qwen2")
                                      .uint("tokenizer.ggml.bos_token_id", 259)
                                      .flag("tokenizer.ggml.add_bos_token", true)
                                      .flag("tokenizer.ggml.add_eos_token", true)
                                      .file());
    write(gv, "gpt2_unknown_pre", gpt2_vocab("no-such-pre").file());
    write(gv, "gpt2_no_merges", gguf_metadata().str("tokenizer.ggml.model", "gpt2").strings("tokenizer.ggml.tokens", small).file());
    write(gv, "gpt2_merge_of_no_pieces", gpt2_vocab("qwen2").strings("tokenizer.ggml.merges", {"x yz"}).file());
    // tokenizer.huggingface.json, preferred to the arrays; and a broken one.
    const std::string hf_json =
        R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},)"
        R"( "added_tokens": [{"id": 3, "content": "<|end|>", "special": true}],)"
        R"( "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},)"
        R"( "decoder": {"type": "ByteLevel"}})";
    write(gv, "hf_json", gpt2_vocab("qwen2").str("tokenizer.huggingface.json", hf_json).uint("tokenizer.ggml.eot_token_id", 3).file());
    write(gv, "hf_json_broken", gpt2_vocab("qwen2").str("tokenizer.huggingface.json", "{\"model\": 1}").file());
    write(gv, "other_model", gguf_metadata().str("tokenizer.ggml.model", "t5").strings("tokenizer.ggml.tokens", small).file());
    write(gv, "short_token_types", small_vocab().ints("tokenizer.ggml.token_type", {2, 3, 3}).file());
    write(gv, "bos_outside", small_vocab().uint("tokenizer.ggml.bos_token_id", 10).file());
    write(gv, "no_tokens", gguf_metadata().str("tokenizer.ggml.model", "llama").file());
    if (fs::exists(fs::path(argv[2]) / "kjv_tok1024.bin")) write(gv, "shipped_kjv", llama2c_as_gguf(fs::path(argv[2]) / "kjv_tok1024.bin"));

    gguf_seeds(out / "gguf");

    // Encoder-decoder files: a small valid one of each source kind (the reader's every
    // check passes), and one missing a tensor.
    for (bool vectors : {true, false}) {
        kvdecode::seq2seq_config c;
        c.decoder = {.dim = 8, .hidden_dim = 12, .n_layers = 1, .n_heads = 2, .n_kv_heads = 1, .vocab_size = 5,
                     .seq_len = 16, .shared_classifier = false};
        c.encoder_layers = 1;
        c.max_source_length = 6;
        (vectors ? c.input_dim : c.source_vocab_size) = 4;
        kvdecode::gguf_writer w = kvdecode::seq2seq_gguf_writer(kvdecode::random_seq2seq_weights<float>(c, 1));
        w.set("tokenizer.ggml.tokens", std::vector<std::string>{"0", "1", "2", "<s>", "</s>"});
        w.set("tokenizer.ggml.bos_token_id", kvdecode::gguf_value(std::uint32_t{3}));
        w.set("tokenizer.ggml.eos_token_id", kvdecode::gguf_value(std::uint32_t{4}));
        if (vectors) {
            w.set("encdec.patch_size", kvdecode::gguf_value(std::uint32_t{2}));
            w.set("encdec.image_height", kvdecode::gguf_value(std::uint32_t{4}));
            w.set("encdec.digit_width", kvdecode::gguf_value(std::uint32_t{4}));
        }
        write(out / "seq2seq_gguf", vectors ? "valid_vectors" : "valid_tokens", from_bytes(w.to_bytes()));
    }

    hf_seeds(out);
    hf_tokenizer_seeds(out / "hf_tokenizer");
    chat_seeds(out / "chat");
    copy_real_files(argv[2], "shipped_", out);
    for (int i = 3; i < argc; ++i) {
        copy_real_files(argv[i], "shared_", out);
        copy_hf_tokenizers(argv[i], "shared_", out);
        if (fs::path(argv[i]).filename() == "hf") copy_hf_files(argv[i], out);
    }
    return 0;
}
